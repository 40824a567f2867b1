"""RPC clusters in the pods table: each cluster as one group, a cluster row with its members beneath.

A member pod is shown only in its group, not again among the pods: one pod, one row, so the keys
(t, m, c, l, v, s) act on the member as on any pod, the running count and $/hr are not counted twice,
and the reader sees at once which pods serve one model together. The group's rows cover the same
columns as a pod's, read in the cluster's terms:

| column   | cluster row                        | server row                   | backend row                                    |
|----------|------------------------------------|------------------------------|------------------------------------------------|
| name     | ▼ NAME                             | ├ ref                        | ├ / └ ref                                      |
| provider | cluster                            | its provider                 | its provider                                   |
| status   | serving / paused: B / links down … | its pod's status             | its pod's status                               |
| GPU      | N pods                             | its GPU                      | its GPU                                        |
| model    | the model                          | the model, or its last error | per-device free/total MiB, APP_MEM budget      |
| engine   | linked n/N up, or direct           | agent state · links n/N up   | agent state (its link's state when not up)     |
| tunnel   | the server's tunnel                | its tunnel                   | —                                              |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text

from podtui.display import format_price, format_uptime
from podtui.services.front import ClusterMember, ClusterRow, DeviceMemory, PodRow

WHOLE_STYLES = {"serving": "bold green", "paused": "bold yellow", "links down": "bold red",
                "unreachable": "bold red", "failed": "bold red"}
MEMBER_STYLES = {"ready": "green", "paused": "yellow", "failed": "red", "unreachable": "red"}


@dataclass(frozen=True)
class MemberRow:
    """One member of a cluster in the table: the member as its agent answered, the pod row podtui
    lists for it (None: not a listed pod), and its cluster (for the group's filter and actions)."""

    key: str                       # "member:CLUSTER/INDEX" (a pod may sit in two remembered clusters)
    member: ClusterMember
    pod: PodRow | None
    cluster: ClusterRow
    last: bool = False             # the group's last row (its tree glyph)

    @property
    def name(self) -> str:
        return self.member.ref


def grouped_rows(pods: Sequence[PodRow], clusters: Sequence[ClusterRow]) -> list:
    """The table's rows: each cluster row followed by its members, then the pods in no cluster."""
    by_key = {pod.key: pod for pod in pods}
    rows: list = []
    grouped: set[str] = set()
    for cluster in clusters:
        rows.append(cluster)
        members = cluster.members
        for index, member in enumerate(members):
            pod = by_key.get(member.pod_key) if member.pod_key else None
            if pod is not None:
                grouped.add(pod.key)
            rows.append(MemberRow(f"member:{cluster.name}/{index}", member, pod, cluster,
                                  last=index == len(members) - 1))
    rows.extend(pod for pod in pods if pod.key not in grouped)
    return rows


def server_pod(cluster: ClusterRow, pods: Sequence[PodRow]) -> PodRow | None:
    """The listed pod row of the cluster's server (None when podtui does not list it)."""
    return next((pod for pod in pods if cluster.server.pod_key and pod.key == cluster.server.pod_key), None)


def devices_text(devices: Sequence[DeviceMemory], budgets_mib: Sequence[int]) -> str:
    """`CPU 24105/24105 MiB free · APP_MEM 400 MiB`: each device's free/total MiB (`?`: unknown) and the
    backend's APP_MEM budget, beside each device when there is one budget per device."""
    def memory(d: DeviceMemory) -> str:
        return f"{d.name} {'?' if d.free_mib is None else d.free_mib}/{'?' if d.total_mib is None else d.total_mib}"

    if len(devices) > 1 and len(budgets_mib) == len(devices):
        return ", ".join(f"{memory(d)} MiB free (APP_MEM {b})" for d, b in zip(devices, budgets_mib))
    parts = ", ".join(f"{memory(d)} MiB free" for d in devices) or "devices unknown"
    budget = f"APP_MEM {'+'.join(map(str, budgets_mib))} MiB" if budgets_mib else "no APP_MEM"
    return f"{parts} · {budget}"


def links_text(member: ClusterMember) -> str:
    """`links 2/2 up` for a server member (`no links` for a direct cluster's server)."""
    return f"links {member.links_up}/{len(member.links)} up" if member.links else "no links"


def _whole_style(state: str) -> str:
    return WHOLE_STYLES.get(state.split(":")[0], "yellow")


def cluster_cells(row: ClusterRow, pods: Sequence[PodRow]) -> tuple:
    """A cluster row's cells (the table in the module docstring): $/hr sums the running members the
    pods listing prices; uptime and tunnel are the server pod's."""
    server = server_pod(row, pods)
    members = [pod for pod in pods if pod.key in {m.pod_key for m in row.members if m.pod_key}]
    prices = [pod.price_per_hour for pod in members if pod.running and pod.price_per_hour is not None]
    engine = "direct" if row.direct else f"linked {row.server.links_up}/{len(row.server.links)} up"
    return (Text(f"▼ {row.name}", style="bold"), "instant" if row.kind == "instant" else "cluster", Text(row.state, style=_whole_style(row.state)),
            f"{len(row.members)} pods", format_price(sum(prices) if prices else None),
            format_uptime(server.uptime_s if server else None), row.model or "—",
            str(row.ctx) if row.ctx else "—", engine, (server.tunnel_url if server else row.server.tunnel_url) or "off")


def member_cells(row: MemberRow, pod_cells: tuple | None) -> tuple:
    """A member's cells: its pod's own (pod_cells, as the pods table draws them; None when the pod
    is not listed) for provider, status, GPU, $/hr and uptime, the member's for the rest."""
    member, pod = row.member, row.pod
    glyph = "└" if row.last else "├"
    name = Text.assemble((f" {glyph} ", "dim"), member.ref, (f" {member.role}", "dim"))
    state = Text(member.state, style=MEMBER_STYLES.get(member.state, ""))
    if member.role == "server":
        if not row.cluster.direct:
            state.append(f" · {links_text(member)}")
        detail = (f"⚠ {member.last_error}" if member.state != "ready" and member.last_error
                  else row.cluster.model or (pod.model if pod else ""))
        ctx = str(row.cluster.ctx) if row.cluster.ctx else "—"
        tunnel = (pod.tunnel_url if pod else member.tunnel_url) or "off"
    else:
        if member.link_state and member.link_state != "up":
            state.append(f" · link {member.link_state}", style="red")
        detail = devices_text(member.devices, member.budgets_mib)
        ctx, tunnel = "—", "—"
    unlisted = ("—", Text("member" if member.pod_key else "not listed", style="dim"), "—", "—", "—")
    provider, status, gpu, price, uptime = pod_cells[1:6] if pod_cells is not None else unlisted
    return (name, provider, status, gpu, price, uptime, detail or "—", ctx, state, tunnel)


def group_matches(cluster: ClusterRow, text: str) -> bool:
    """The filter shows or hides a group whole: the cluster's name, state, model or a member's ref."""
    if not text:
        return True
    needle = text.lower()
    return any(needle in value.lower() for value in
               (cluster.name, cluster.state, cluster.model, "cluster", *(m.ref for m in cluster.members)))


SUMMARY_DETAIL_CHARS = 160   # the summary line stays a line or two; enter on the cluster row says it all


def cluster_warnings(clusters: Sequence[ClusterRow]) -> list[str]:
    """Summary-line problems: each cluster that is not serving, with why (cut at SUMMARY_DETAIL_CHARS);
    a serving one only with a note."""
    def why(detail: str) -> str:
        if len(detail) <= SUMMARY_DETAIL_CHARS:
            return detail
        return detail[:SUMMARY_DETAIL_CHARS].rstrip() + "… (enter on its row: all of it)"

    return [f"cluster {row.name} {row.state}" + (f" — {why(row.detail)}" if row.detail else "")
            for row in clusters if row.state != "serving" or row.detail]


def cluster_detail_lines(row: ClusterRow) -> list[str]:
    """`enter` on a cluster row: the whole, then every member, one fact a line."""
    lines = [f"{'state':<16} {row.state}", f"{'why':<16} {row.detail or '—'}",
             f"{'model':<16} {row.model or '—'}", f"{'ctx':<16} {row.ctx or '—'}",
             f"{'kind':<16} {'Runpod Instant Cluster' if row.kind == 'instant' else 'pods linked by podtui'}",
             f"{'links':<16} {'direct (no SSH links: an overlay)' if row.direct else links_text(row.server)}"]
    for member in row.members:
        lines.append("")
        lines.append(f"{member.role:<16} {member.ref}  {member.state}  (llama.cpp {member.build or '?'})")
        if member.role == "server":
            lines.extend(f"{'  link':<16} {name} {state}" + (f": {error}" if error and state != "up" else "")
                         for name, state, error in member.links)
        else:
            lines.append(f"{'  memory':<16} {devices_text(member.devices, member.budgets_mib)}")
        if member.last_error:
            lines.append(f"{'  last error':<16} {member.last_error}")
        if not member.pod_key:
            lines.append(f"{'  pod':<16} not among the listed pods (its keys act only when podtui lists it)")
    return lines


def acting_pod(row: object, pods: Sequence[PodRow]) -> tuple[PodRow | None, str]:
    """The pod that a pod key (t, m, c, l, v, r) acts on for the selected row: the pod itself; a
    cluster row's server; a member's own pod. (None, why) when the member is not a listed pod."""
    if isinstance(row, PodRow):
        return row, ""
    if isinstance(row, ClusterRow):
        member, pod = row.server, server_pod(row, pods)
    elif isinstance(row, MemberRow):
        member, pod = row.member, row.pod
    else:
        return None, "Select a pod first (no pod is listed or none is selected)."
    if pod is None and member.pod_key:   # a pod the list hides (an Instant Cluster's member): its key reaches it
        pod = PodRow(key=member.pod_key, name=member.ref, provider=member.pod_key.partition(":")[0], status="—")
    if pod is None:
        return None, (f"{member.ref} is not among the pods podtui lists, so its keys cannot reach it here; "
                      f"use `podtui agent {member.ref} …` / `podtui tunnel {member.ref}`, or add it with "
                      "`podtui hosts add`")
    return pod, ""


def role_refusal(row: object, what: str) -> str:
    """Why swap or fit (what) does not apply to a backend row ("" when it does): the backend's agent
    answers not_in_role to engine.swap and fit.search (remote_agent.engine.cluster)."""
    if isinstance(row, MemberRow) and row.member.role == "backend":
        return (f"{row.member.ref} is an RPC backend: it lends its device to the server and serves no model, "
                f"so {what} runs on the server — select the cluster row {row.cluster.name} (or its server)")
    return ""


def instant_member_refusal(row: object, what: str) -> str:
    """Why stop, resume or terminate (what) does not apply to one member of a Runpod Instant Cluster
    ("" when it does): Runpod manages members only through the cluster (the pod endpoints refuse them,
    openapi-v2.json Pod.cluster), and has no stop for a cluster at all."""
    if isinstance(row, MemberRow) and row.cluster.kind == "instant":
        return (f"{row.member.ref} is a member of Runpod Instant Cluster {row.cluster.name}: Runpod {what}s its "
                f"members only with the whole cluster — select the cluster row {row.cluster.name} (D deletes it; "
                "an Instant Cluster cannot be stopped)")
    return ""


def server_note(row: object) -> str:
    """What the swap dialog says on a cluster's server ("" for a plain pod)."""
    cluster = row.cluster if isinstance(row, MemberRow) else row
    if not isinstance(cluster, ClusterRow):
        return ""
    return (f"RPC cluster {cluster.name}: the swap restarts llama-server --rpc on the server across "
            f"{len(cluster.backends)} backend(s) (their weights are sent again); if the new model fails, "
            "the agent rolls back to the one that served")
