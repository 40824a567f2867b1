"""Runpod Instant Clusters through REST v2 (`/v2/clusters`, the spec openapi-v2.json, tag Clusters).

An Instant Cluster is 2-250 pods of one shape (ClusterCompute: gpuTypeId, gpuCountPerPod, podCount)
with one container config for all (CreateClusterRequest: image, env, ports, …; no `registry`, so
private images cannot be used) and a private VXLAN overlay (Cluster.network; each member's address
is Pod.cluster.ip). Runpod sets NODE_RANK (0 = the primary), NODE_ADDR, NUM_NODES and PRIMARY_ADDR on
every member (docs; RPC.md §5.2). The spec has no stop or start for a cluster: PATCH only renames it,
DELETE terminates every member. Members are hidden from `GET /v2/pods` unless includeClusterPods=true,
and the pod endpoints refuse to change or delete them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from podtui.providers.base import Pod, PodNotFound, ProviderError
from podtui.providers.runpod import pod_from_json
from podtui.providers.runpod_api import MalformedResponse, RunpodApi, Subject

CLUSTER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
CLUSTER_TYPE = "APPLICATION"  # "a general multi-node application cluster" (spec ClusterType); no roles assigned


class ClusterNotFound(PodNotFound):
    """No Instant Cluster with that id (HTTP 404)."""


CLUSTERS = Subject(noun="cluster", listing="podtui cluster list", access="clusters", not_found=ClusterNotFound)


@dataclass(frozen=True)
class InstantCluster:
    """A Cluster as the spec gives it: id, name, compute {gpuTypeId, gpuCountPerPod, podCount}, pods_total,
    by_status {STATUS: n}, primary_pod_id / primary_status / primary_ssh ("host:port"; None until the
    primary runs with 22/tcp), network_cidr (None until the overlay exists), data_center, created_at."""
    id: str
    name: str
    gpu: str
    gpu_count: int
    pod_count: int
    pods_total: int
    by_status: dict[str, int] = field(default_factory=dict)
    primary_pod_id: str | None = None
    primary_status: str | None = None
    primary_ssh: str | None = None
    network_cidr: str | None = None
    data_center: str | None = None
    created_at: str | None = None

    @property
    def all_running(self) -> bool:
        """Whether every one of pod_count members is RUNNING (by the summary)."""
        return self.by_status.get("RUNNING", 0) >= self.pod_count

    def as_dict(self) -> dict:
        """JSON output: every field, under the names above."""
        return {"id": self.id, "name": self.name, "gpu": self.gpu, "gpu_count": self.gpu_count,
                "pod_count": self.pod_count, "pods_total": self.pods_total, "by_status": dict(self.by_status),
                "primary_pod_id": self.primary_pod_id, "primary_status": self.primary_status,
                "primary_ssh": self.primary_ssh, "network_cidr": self.network_cidr,
                "data_center": self.data_center, "created_at": self.created_at}


@dataclass(frozen=True)
class ClusterPod:
    """One member pod: the Pod (ssh: its own public 22/tcp, as for any pod), its rank (NODE_RANK; None
    until assigned) and overlay ip (PodCluster.ip; None until assigned)."""
    pod: Pod
    rank: int | None
    ip: str | None


def cluster_from_json(data: object) -> InstantCluster:
    """A Cluster response → InstantCluster. Raises MalformedResponse when id/compute/pods are missing."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not CLUSTER_ID.fullmatch(data["id"]):
        raise MalformedResponse("Runpod sent a cluster podtui cannot read (no usable id)",
                                "try again; if it persists the API may have changed")
    compute = data.get("compute") if isinstance(data.get("compute"), dict) else {}
    pods = data.get("pods") if isinstance(data.get("pods"), dict) else {}
    primary = data.get("primary") if isinstance(data.get("primary"), dict) else {}
    network = data.get("network") if isinstance(data.get("network"), dict) else {}
    by_status = pods.get("byStatus") if isinstance(pods.get("byStatus"), dict) else {}
    return InstantCluster(
        id=data["id"], name=str(data.get("name") or ""), gpu=str(compute.get("gpuTypeId") or ""),
        gpu_count=_count(compute.get("gpuCountPerPod"), 1), pod_count=_count(compute.get("podCount"), 0),
        pods_total=_count(pods.get("total"), 0),
        by_status={str(k): int(v) for k, v in by_status.items() if isinstance(v, int)},
        primary_pod_id=primary.get("podId"), primary_status=primary.get("status"),
        primary_ssh=primary.get("sshEndpoint"), network_cidr=network.get("cidr"),
        data_center=data.get("dataCenterId"), created_at=data.get("createdAt"))


def _count(value: object, default: int) -> int:
    """A count from a response: an int as sent, else default (a malformed field never raises)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def member_from_json(data: object) -> ClusterPod:
    """A member Pod response → ClusterPod (pod_from_json plus Pod.cluster's rank and ip)."""
    pod = pod_from_json(data)
    cluster = data.get("cluster") if isinstance(data.get("cluster"), dict) else {}
    rank = cluster.get("rank")
    ip = cluster.get("ip")
    return ClusterPod(pod, rank if isinstance(rank, int) else None, ip if isinstance(ip, str) and ip else None)


def cluster_body(*, name: str, image: str, gpu: str, gpu_count: int, pod_count: int, env: dict[str, str],
                 disk_gb: int, volume_gb: int | None, volume_path: str = "/workspace") -> dict:
    """A CreateClusterRequest: type APPLICATION, 22/tcp the only port (never the RPC port: the overlay
    carries it), Runpod's SSH keys injected (startSsh), no Runpod Jupyter (it adds a public port)."""
    body = {"name": name, "type": CLUSTER_TYPE, "image": image, "env": dict(env), "ports": ["22/tcp"],
            "disk": disk_gb, "startSsh": True, "startJupyter": False,
            "compute": {"gpuTypeId": gpu, "gpuCountPerPod": gpu_count, "podCount": pod_count}}
    if volume_gb:
        body["mounts"] = {"persistent": {"size": volume_gb, "path": volume_path}}
    return body


def _path_id(cluster_id: str) -> str:
    if not CLUSTER_ID.fullmatch(cluster_id):
        raise ProviderError(f"{cluster_id!r} is not a Runpod cluster id", "run `podtui cluster list` to see the ids")
    return cluster_id


class RunpodClusters:
    """The cluster calls over one RunpodApi (blocking; keep them off the UI thread). Each raises what
    RunpodApi.call raises (ClusterNotFound on 404), MalformedResponse for a reply it cannot read."""

    def __init__(self, api: RunpodApi) -> None:
        self.api = api

    def create(self, body: dict) -> InstantCluster:
        """`POST /v2/clusters` (201 Cluster). Never retried after a timeout: it would make a second cluster."""
        return cluster_from_json(self.api.call("POST", "/v2/clusters", body=body, what="creating the cluster",
                                               idempotent=False, subject=CLUSTERS))

    def get(self, cluster_id: str) -> InstantCluster:
        """`GET /v2/clusters/{id}`."""
        return cluster_from_json(self.api.call("GET", f"/v2/clusters/{_path_id(cluster_id)}",
                                               what=f"reading cluster {cluster_id}", subject=CLUSTERS))

    def list(self) -> list[InstantCluster]:
        """`GET /v2/clusters`: every cluster of the account."""
        data = self.api.call("GET", "/v2/clusters", what="listing clusters", subject=CLUSTERS)
        if not isinstance(data, dict) or not isinstance(data.get("clusters"), list):
            raise MalformedResponse("Runpod sent a cluster list podtui cannot read", "try again in a minute")
        return [cluster_from_json(item) for item in data["clusters"]]

    def members(self, cluster_id: str) -> list[ClusterPod]:
        """`GET /v2/clusters/{id}/pods`: the full member pods, by rank (unranked last)."""
        data = self.api.call("GET", f"/v2/clusters/{_path_id(cluster_id)}/pods",
                             what=f"listing cluster {cluster_id}'s pods", subject=CLUSTERS)
        if not isinstance(data, dict) or not isinstance(data.get("pods"), list):
            raise MalformedResponse("Runpod sent a member list podtui cannot read", "try again in a minute")
        members = [member_from_json(item) for item in data["pods"]]
        return sorted(members, key=lambda m: (m.rank is None, m.rank or 0, m.pod.id))

    def delete(self, cluster_id: str) -> None:
        """`DELETE /v2/clusters/{id}` (204): the cluster and every member pod are terminated."""
        self.api.call("DELETE", f"/v2/clusters/{_path_id(cluster_id)}", what=f"deleting cluster {cluster_id}",
                      subject=CLUSTERS)
