"""RPC clusters on a Runpod Instant Cluster (`POST /v2/clusters`, providers/runpod_clusters.py).

`launch_instant` makes one cluster of backends+1 identical pods with one env (a cluster has one):
seed 003's variables with APP_MODE=rank, so the agent of rank 0 (Runpod's NODE_RANK) is the server
and every other rank a backend (remote_agent/engine/roles.py). Only 22/tcp is published, never the
RPC port. It then:
1. waits, with progress, until every member is RUNNING with a public 22/tcp (`GET /v2/clusters/{id}/pods`;
   members are hidden from `GET /v2/pods`) and has its overlay address (PodCluster.ip);
2. reads each member's printed host keys from its own log and pins them as verified, as `podtui launch`
   does for a pod (PodService.fetch_printed_block + pin: `podtui-<pod id>`);
3. waits for every member's agent, then joins them:
   - by default with SSH links over the overlay (services/cluster.link_cluster, each backend reached at
     `PodCluster.ip:overlay_ssh_port`, its pin checked by HostKeyAlias whatever the address);
   - with direct=True without links: the backends' ggml-rpc-server binds the overlay (APP_BIND=NODE_ADDR)
     and the server's agent gets their `ip:port` over podtui's verified channel (`cluster.direct`).
     That trusts every pod on the overlay: ggml-rpc-server has no authentication, and whoever reaches
     its port can run code in the backend. Runpod's docs say only the account's cluster members share
     the overlay (RPC.md §5.2); that was not verified. The traffic is not encrypted.
The cluster record (clusters.json) remembers kind "instant" and the Runpod cluster id from the moment
the cluster exists, so a failure halfway can name it and `podtui cluster terminate NAME` deletes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from podtui.errors import PodtuiError
from podtui.providers.base import PodSpec, ProviderError
from podtui.providers.runpod_clusters import ClusterPod, InstantCluster, RunpodClusters, cluster_body
from podtui.services import cluster as clusters
from podtui.services.pods import FAILED_STATUSES, PodService

Progress = Callable[[str, str], None]
INSTANT = "instant"
OVERLAY_SSH_PORT = 22  # the members' own sshd, as the other members reach it over the overlay


class NoClusterStop(clusters.ClusterProblem):
    """Runpod's API has no stop (or start) for an Instant Cluster."""


def price_per_hr(provider, gpu: str, gpu_count: int, pods: int) -> float | None:
    """The catalog's list price of the whole cluster in USD/h (per-GPU price × gpu_count × pods), or None
    when the catalog names no price for gpu. Raises what provider.gpu_catalog raises."""
    for item in provider.gpu_catalog():
        if item.name == gpu and item.price_per_hr is not None:
            return round(item.price_per_hr * gpu_count * pods, 4)
    return None


def rank_env(base: PodSpec, app_mem: str | None, direct: bool) -> dict[str, str]:
    """The one env of every member: base.env() (MODEL, CTX, PORT, …) plus APP_MODE=rank, APP_MEM, and with
    direct APP_BIND=NODE_ADDR. APP_RPC_BACKENDS stays unset: the rank-0 agent then uses 127.0.0.1:60151,…,
    one per other member, where the links listen."""
    env = {**base.env(), "APP_MODE": "rank"}
    if app_mem:
        env["APP_MEM"] = str(app_mem)
    if direct:
        env["APP_BIND"] = "NODE_ADDR"
    return env


def launch_instant(provider, base: PodSpec, backends: int, *, name: str, app_mem: str | None = None,
                   direct: bool = False, overlay_ssh_port: int = OVERLAY_SSH_PORT,
                   service: PodService | None = None, progress: Progress = lambda *a: None,
                   agent_wait_s: float = 300.0) -> dict:
    """Create, wait, pin, link (see the module docstring). Returns {"name", "kind": "instant",
    "cluster_id", "server", "backends", "direct", "links", "pods", "price_per_hr"}. Raises ProviderError
    (create refused, members not running in time), NoPrintedBlock / PrintedBlockError / HostKeyNotVerified,
    ClusterProblem, AgentError; once the cluster exists every fix names it, that it is billed, and
    `podtui cluster terminate NAME`."""
    service = service or PodService(provider)
    image = base.image or provider.image
    if not image:
        raise ProviderError("no pod image is configured", "pass --image REF or set PODTUI_IMAGE (podtui's image)")
    count = backends + 1
    price = price_per_hr(provider, base.gpu, base.gpu_count, count)
    progress("price", f"{count} pods of {base.gpu_count}x {base.gpu}: "
             + (f"${price:.2f}/hr for the whole cluster (catalog list price)" if price is not None
                else "the catalog gives no price for this GPU"))
    body = cluster_body(name=name, image=image, gpu=base.gpu, gpu_count=base.gpu_count, pod_count=count,
                        env=rank_env(base, app_mem, direct), disk_gb=base.container_disk_gb,
                        volume_gb=base.volume_gb, volume_path=base.volume_path)
    api = RunpodClusters(provider.api)
    progress("create", f"asking Runpod for an Instant Cluster of {count} pods ({base.gpu})")
    made = api.create(body)
    progress("created", f"cluster {made.id} ({made.name})")
    record = {"name": name, "kind": INSTANT, "cluster_id": made.id, "server": None, "backends": [],
              "direct": direct, "reach": {}, "linked_at": None}
    clusters.save_cluster(record)
    try:
        members = wait_for_members(api, made, service, progress, count)
        for member in members:
            service.pin(member.pod, service.fetch_printed_block(member.pod, progress))
            progress("pinned", f"{member.pod.id} (rank {member.rank}): host keys pinned from its log")
        server, others = members[0], members[1:]
        record.update(server=server.pod.id, backends=[m.pod.id for m in others])
        clusters.update_cluster(name, lambda old: {**(old or {}), **record})
        clusters.wait_for_agents([m.pod.id for m in members], progress, agent_wait_s)
        if direct:
            result = link_direct(server, others, name=name, progress=progress)
        else:
            reach = {m.pod.id: f"{m.ip}:{overlay_ssh_port}" for m in others}
            result = clusters.link_cluster(server.pod.id, [m.pod.id for m in others], name=name, reach=reach,
                                           progress=progress, extra={"kind": INSTANT, "cluster_id": made.id})
    except PodtuiError as exc:
        exc.fix = (f"{exc.fix}; Instant Cluster {made.id} ({name}, {count} pods) was created and is billed until "
                   f"you delete it: podtui cluster terminate {name}")
        raise
    record = clusters.update_cluster(name, lambda old: {**(old or record), "kind": INSTANT, "cluster_id": made.id})
    return {**result, **record, "links": result.get("links", []), "pods": [m.pod.id for m in members],
            "price_per_hr": price}


def wait_for_members(api: RunpodClusters, made: InstantCluster, service: PodService,
                     progress: Progress, expected: int) -> list[ClusterPod]:
    """Poll `GET /v2/clusters/{id}/pods` every service.poll_s s until the expected number of members (what
    podtui asked for, not what the reply says) are RUNNING with a public 22/tcp, a rank and an overlay ip;
    returns them by rank. Raises ProviderError on a member in
    ERROR/TERMINATED or after service.wait_timeout_s s."""
    deadline = time.monotonic() + service.wait_timeout_s
    last = ""
    while True:
        members = api.members(made.id)
        failed = [m for m in members if m.pod.status.upper() in FAILED_STATUSES]
        if failed:
            raise ProviderError(f"member {failed[0].pod.id} of cluster {made.id} went to {failed[0].pod.status}",
                                "read its log in the Runpod console")
        ready = [m for m in members if m.pod.running and m.pod.ssh is not None and m.rank is not None and m.ip]
        if len(ready) >= expected:
            return sorted(ready, key=lambda m: m.rank)[:expected]
        note = f"{len(ready)} of {expected} members running with SSH and an overlay address"
        if note != last:
            progress("waiting", f"cluster {made.id}: {note}")
            last = note
        if time.monotonic() >= deadline:
            raise ProviderError(f"cluster {made.id} had {note} after {service.wait_timeout_s:g} s",
                                "GPU hosts sometimes take long to pull the image; see `podtui cluster list`")
        time.sleep(service.poll_s)


def link_direct(server: ClusterPod, backends: list[ClusterPod], *, name: str, progress: Progress) -> dict:
    """No links: `cluster link --direct` (services/cluster.link_cluster) with each backend required to
    bind its overlay address (PodCluster.ip): roles, builds and count checked, then the server's agent
    gets the backends' endpoints and APP_MEM budgets (`cluster.direct`). Returns link_cluster's answer
    ("links": []). Raises ClusterProblem, AgentError, CannotConnect."""
    return clusters.link_cluster(server.pod.id, [b.pod.id for b in backends], name=name, direct=True,
                                 progress=progress, binds={b.pod.id: b.ip for b in backends})


def runpod_clusters(provider) -> list[dict]:
    """The account's Instant Clusters (`GET /v2/clusters`) as InstantCluster.as_dict()s."""
    return [c.as_dict() for c in RunpodClusters(provider.api).list()]


def stop_instant(record: dict) -> None:
    """Always raises NoClusterStop: the spec has no stop for a cluster (PATCH renames, DELETE terminates)."""
    raise NoClusterStop(f"cluster {record['name']} is a Runpod Instant Cluster ({record.get('cluster_id')}), and "
                        "Runpod's API has no stop for one: PATCH only renames it, DELETE terminates every member",
                        f"delete it when done: podtui cluster terminate {record['name']} (its volumes go too)")


def terminate_instant(provider, record: dict) -> dict:
    """`DELETE /v2/clusters/{id}` (every member is terminated) and forget the record. A cluster Runpod no
    longer has is forgotten too. Returns {"name", "terminate": [member pod ids], "cluster_id", "skipped": []}."""
    api = RunpodClusters(provider.api)
    from podtui.providers.runpod_clusters import ClusterNotFound
    try:
        api.delete(record["cluster_id"])
    except ClusterNotFound:
        pass  # gone already (deleted in the console): nothing is billed
    clusters.forget_cluster(record["name"])
    return {"name": record["name"], "cluster_id": record["cluster_id"],
            "terminate": [p for p in [record.get("server"), *record.get("backends", [])] if p], "skipped": []}
