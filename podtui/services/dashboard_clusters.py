"""The TUI's RPC clusters (issue 18): each remembered cluster as one group, and what acts on it.

The TUI only draws and asks; this module asks. A listing reads clusters.json and asks every
member's agent for its status through podtui.services.cluster.cluster_status (the code `podtui
cluster status` runs: one verified agent session per member, so the screen refreshes clusters less
often than pods). Each answer becomes a ClusterRow (podtui.services.front): the state of the whole
in one word, why in one sentence, and a ClusterMember per pod matched to the pod's row in the pods
listing, so swap, fit, logs and the tunnel on a member go through the ordinary pod paths with its
key. Stop and terminate go through podtui.services.cluster_pods.stop_or_terminate, as `podtui
cluster stop|terminate` does: Runpod members only, server first.

The whole's word, first that applies (README "SSH links and `podtui cluster`"):
- unreachable: the server's agent cannot be asked;
- paused: the server's agent paused llama-server because a backend does not answer the RPC
  handshake (status.last_error.backends_down, its endpoints mapped to the backends in
  APP_RPC_BACKENDS order, which is the order clusters.json keeps);
- links down: a link the server's agent owns is not up (never for a direct cluster);
- serving: the server is ready;
- else the server's own word (starting, loading, stopped, failed, …).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from podtui.errors import PodtuiError
from podtui.providers.base import Provider
from podtui.services import cluster as clusters
from podtui.services import cluster_pods
from podtui.services.front import ClusterListing, ClusterMember, ClusterRow, DeviceMemory, PodRow
from podtui.services.pods import PodService

CLUSTER_KEY = "cluster:"
NO_RUNPOD_TITLE = "stopping or terminating a cluster acts on its Runpod pods, and no Runpod API key is configured"
NO_RUNPOD_FIX = ("members that are added SSH hosts are your machines: stop an engine with s on its row; "
                 "for Runpod pods, add the key (restart podtui, or export RUNPOD_API_KEY)")

StatusOf = Callable[[str], dict]


def _message(error: object) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("kind") or "")
    return str(error or "")


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def budgets(backend: dict) -> tuple[int, ...]:
    """A backend's APP_MEM in MiB: memory_budgets_mib (one per device) when its status gives them,
    else its one memory_budget_mib; () when unset."""
    many = [b for b in backend.get("memory_budgets_mib") or [] if _int(b) is not None]
    one = _int(backend.get("memory_budget_mib"))
    return tuple(many) if many else ((one,) if one is not None else ())


def find_row(ref: str, rows: Sequence[PodRow]) -> PodRow | None:
    """The listed pod a cluster member's ref names: its id (the part of PodRow.key after the
    provider), else its name; None when podtui lists no such pod."""
    by_id = [row for row in rows if row.key.partition(":")[2] == ref]
    if by_id:
        return by_id[0]
    return next((row for row in rows if row.name == ref), None)


def backend_names(status: dict, endpoints: Sequence[str]) -> list[str]:
    """The backends (as clusters.json names them) behind server endpoints ("127.0.0.1:60151"),
    by their position in the server's APP_RPC_BACKENDS; an endpoint it does not list is kept."""
    order = [str(entry.get("endpoint")) for entry in status["server"].get("backends") or []]
    refs = [backend["ref"] for backend in status["backends"]]
    names = []
    for endpoint in endpoints:
        index = order.index(endpoint) if endpoint in order else -1
        names.append(refs[index] if 0 <= index < len(refs) else endpoint)
    return names


def whole_state(status: dict) -> tuple[str, str]:
    """(word, one sentence) for the cluster as a whole, from cluster_status's answer (the rules in
    the module docstring). The word names the backend(s) when the server is paused or links are down."""
    server = status["server"]
    state = str(server.get("state") or "unknown")
    error = server.get("last_error")
    if state == "unreachable":
        return "unreachable", f"the server {server['ref']}'s agent cannot be asked: {_message(error)}"
    if state == "paused":
        details = error if isinstance(error, dict) else {}
        down = details.get("backends_down") or ([details["backend"]] if details.get("backend") else [])
        names = backend_names(status, [str(e) for e in down])
        word = f"paused: {', '.join(names)}" if names else "paused"
        # What each named backend's own agent says: over a link, a dead ggml-rpc-server behind a live
        # sshd reads to the server as a handshake closed early, which its message puts down to another
        # build; the backend's own state shows the real cause.
        own = [f"{b['ref']} itself is {b.get('state')}" + (f" ({_message(b['last_error'])})" if b.get("last_error") else "")
               for b in status["backends"] if b["ref"] in names and b.get("state") != "ready"]
        return word, f"llama-server is paused on {', '.join(names) or 'a backend'}: {_message(error)}" + \
            "".join(f"; {text}" for text in own)
    links = [] if status.get("direct") else [link for link in server.get("links") or [] if link.get("state") != "up"]
    if links:
        names = [str(link.get("name")) for link in links]
        reasons = "; ".join(f"{link.get('name')} {link.get('state')}"
                            + (f" ({link['last_error']})" if link.get("last_error") else "") for link in links)
        return f"links down: {', '.join(names)}", f"the server's link(s) to {reasons}"
    if state == "ready":
        silent = [b["ref"] for b in status["backends"] if b.get("state") == "unreachable"]
        return "serving", (f"serving; the agent of {', '.join(silent)} cannot be asked" if silent else "")
    return state, _message(error)


def cluster_row(status: dict, rows: Sequence[PodRow], runpod: str = "") -> ClusterRow:
    """A ClusterRow from cluster_status's answer; rows (the pods listing) give each member its
    pod_key and, when the server's status does not say, the model and ctx its pod row shows. An
    Instant Cluster's members are Runpod pods the pod list hides: with runpod (the Runpod provider's
    name) they get the key `runpod:ID`, so the pod keys reach them all the same."""
    server = status["server"]

    def key(ref: str, row: PodRow | None) -> str:
        if row is not None:
            return row.key
        return f"{runpod}:{ref}" if runpod and status.get("kind") == "instant" else ""

    server_row = find_row(server["ref"], rows)
    by_position = server.get("backends") or []
    backends = []
    for index, backend in enumerate(status["backends"]):
        entry = by_position[index] if index < len(by_position) else {}
        devices = tuple(DeviceMemory(str(d.get("name") or d.get("description") or "?"), _int(d.get("free_mib")),
                                     _int(d.get("total_mib"))) for d in backend.get("devices") or [])
        row = find_row(backend["ref"], rows)
        backends.append(ClusterMember(backend["ref"], "backend", str(backend.get("state") or "unknown"),
                                      key(backend["ref"], row), str(backend.get("build") or ""),
                                      _message(backend.get("last_error")), devices=devices,
                                      budgets_mib=budgets(backend),
                                      link_state=str(entry.get("link_state") or "")))
    links = tuple((str(link.get("name")), str(link.get("state")), str(link.get("last_error") or ""))
                  for link in server.get("links") or [])
    member = ClusterMember(server["ref"], "server", str(server.get("state") or "unknown"),
                           key(server["ref"], server_row), str(server.get("build") or ""),
                           _message(server.get("last_error")), links=links)
    word, detail = whole_state(status)
    model = server.get("model") or (server_row.model if server_row else "")
    ctx = _int(server.get("ctx")) or (server_row.ctx if server_row else None)
    return ClusterRow(key=f"{CLUSTER_KEY}{status['name']}", name=status["name"], state=word, detail=detail,
                      model=str(model or ""), ctx=ctx, direct=bool(status.get("direct")),
                      kind=str(status.get("kind") or "pods"), server=member,
                      backends=tuple(backends))


class ClusterBoard:
    """Lists the remembered clusters and stops or terminates one. status_of(name) is how a cluster
    is asked (default podtui.services.cluster.cluster_status). Thread-safe: it keeps no state."""

    def __init__(self, status_of: StatusOf | None = None) -> None:
        self.status_of = status_of or (lambda name: clusters.cluster_status(name))

    def list(self, rows: Sequence[PodRow], runpod: str = "") -> ClusterListing:
        """Every cluster in clusters.json (by name) as a ClusterRow (cluster_row: rows, runpod); one that
        cannot be asked at all (forgotten meanwhile, an Instant Cluster whose launch stopped before its
        members ran) is a problem line. Never raises PodtuiError."""
        listing = ClusterListing()
        for name in sorted(clusters.load_clusters()):
            try:
                listing.rows.append(cluster_row(self.status_of(name), rows, runpod))
            except PodtuiError as exc:
                listing.problems.append(f"cluster {name}: {exc.title}")
        return listing

    def act(self, provider: Provider | None, name: str, action: str) -> str:
        """stop or terminate (action) the cluster NAME's Runpod pods, server first; one sentence.
        Raises PodtuiError without a Runpod provider, UsageProblem for an unknown cluster,
        ProviderError from the API."""
        if provider is None:
            raise PodtuiError(NO_RUNPOD_TITLE, NO_RUNPOD_FIX)
        result = cluster_pods.stop_or_terminate(provider, name, action)
        done = ", ".join(result.get(action) or []) or "no Runpod pod"
        verb = "stopped" if action == "stop" else "terminated"
        text = f"cluster {name}: {verb} {done}"
        if action == "stop" and result.get(action):
            text += " (volumes and pins kept; compute billing stops)"
        if action == "terminate":
            text += "; the cluster is forgotten"
        if result.get("skipped"):
            text += f"; not Runpod pods, left running: {', '.join(result['skipped'])}"
        return text


class ClusterServices:
    """TuiServices' cluster methods, mixed into podtui.services.dashboard.ProviderServices: the board
    lists and acts; the pods listed last give members their rows; the Runpod provider (the one that
    launches) is the one whose pods stop and terminate."""

    clusters: ClusterBoard
    listed_rows: list[PodRow]
    services: list[PodService]
    _tunnels: dict[str, tuple[object, str]]
    _lock: threading.Lock

    def _runpod(self) -> Provider | None:
        return next((s.provider for s in self.services if s.provider.can_launch), None)

    def list_clusters(self) -> ClusterListing:
        runpod = self._runpod()
        listing = self.clusters.list(list(self.listed_rows), runpod.name if runpod else "")
        with self._lock:   # the server's tunnel, for a server the pod list hides (an Instant Cluster's)
            urls = {key: url for key, (_, url) in self._tunnels.items()}
        listing.rows = [replace(row, server=replace(row.server, tunnel_url=urls.get(row.server.pod_key, "")))
                        for row in listing.rows]
        return listing

    def stop_cluster(self, name: str) -> str:
        return self.clusters.act(self._runpod(), name, "stop")

    def terminate_cluster(self, name: str) -> str:
        return self.clusters.act(self._runpod(), name, "terminate")
