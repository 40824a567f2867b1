"""The Instant Cluster part of the Runpod REST v2 DOUBLE (tests/testbed/runpod_double.py): a DOUBLE of
`/v2/clusters` as the published spec (openapi-v2.json, tag Clusters) describes it, not Runpod.

Served: `GET/POST /v2/clusters` (201 Cluster), `GET/PATCH/DELETE /v2/clusters/{id}` (404 when missing;
PATCH renames only, body checked against UpdateClusterRequest; DELETE terminates every member, 204),
`GET /v2/clusters/{id}/pods` (ListPodsResponse). Request bodies are checked against the spec's schemas
(CreateClusterRequest, UpdateClusterRequest) like every other body of the double: a violation is a 422
and lands in `request_violations`; responses are checked against Cluster / ListClustersResponse /
ListPodsResponse. Members are hidden from `GET /v2/pods` unless `includeClusterPods=true`, and the pod
endpoints refuse to delete or act on them (the spec: members "cannot be modified or deleted via the pod
endpoints").

Each member is a pod of the double (`pods`), with `cluster {id, rank, ip}` and the env Runpod's docs
say every node gets: NODE_RANK, NODE_ADDR, NUM_NODES, PRIMARY_ADDR (RPC.md §5.2). It moves toward
RUNNING one step per read of the cluster or its pods, like a pod per `GET /v2/pods/{id}`.

Where the spec is silent, this double ASSUMES:
- members are named `<cluster name>-<rank>`, and rank r's overlay address is `cluster_ip(r)` (default
  10.65.0.(r+2), in the spec's example CIDR 10.65.0.0/16); tests on loopback make it 127.0.0.1;
- every member with 22/tcp in `ports` gets a public `ssh.direct` (the spec promises only
  `primary.sshEndpoint`); where it points is `cluster_ssh(rank)` → (host, port), default the double's
  ssh_host/ssh_port;
- an unknown `gpuTypeId` or a missing `image` is a 400 (the spec: "the upstream rejects" a bad shape);
- a member refused by `DELETE /v2/pods/{id}` or `POST /v2/pods/{id}/action` gets 409 (a status both
  operations list) with a detail naming the cluster;
- the data centre is US-KS-2 once a member runs; the overlay is vxlanId 42, port 4789.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

from tests.testbed.runpod_pod_logs import now


class ClusterRoutes:
    """A mixin of RunpodDouble, which holds `pods`, `gpus`, `_lock`, `_new_pod`, `_advance`, `_send_json`,
    `_problem` and `_invalid`. `_route_clusters` answers what is its own and returns True."""

    cluster_ip: Callable[[int], str] = staticmethod(lambda rank: f"10.65.0.{rank + 2}")
    cluster_ssh: Callable[[int], tuple[str, int]] | None = None

    @property
    def clusters(self) -> dict[str, dict]:
        if "_clusters" not in self.__dict__:
            self.__dict__["_clusters"] = {}
            self.__dict__["_cluster_ids"] = itertools.count(1)
        return self.__dict__["_clusters"]

    def members_of(self, cluster_id: str) -> list[dict]:
        """The member pods of a cluster, by rank (the double's own dicts; hold _lock to change them)."""
        return sorted((p for p in self.pods.values() if (p.get("cluster") or {}).get("id") == cluster_id),
                      key=lambda p: p["cluster"]["rank"])

    # -- routing -------------------------------------------------------------------------------
    def _route_clusters(self, handler, method: str, segments: list[str], query: dict, body) -> bool:
        if segments[:2] == ["v2", "pods"]:
            return self._member_guard(handler, method, segments, query)
        if segments[:2] != ["v2", "clusters"]:
            return False
        if len(segments) == 2:
            if method == "GET":
                with self._lock:
                    views = [self._cluster_view(c) for c in self.clusters.values()]
                self._send_json(handler, 200, {"clusters": views}, "ListClustersResponse")
            elif method == "POST":
                self._create_cluster(handler, body)
            else:
                self._problem(handler, 405, "Method Not Allowed", "The requested method is not allowed for this path.")
            return True
        with self._lock:
            cluster = self.clusters.get(segments[2])
        if cluster is None:
            self._problem(handler, 404, "Not Found", "cluster not found")
            return True
        tail = segments[3:]
        if tail == ["pods"] and method == "GET":
            with self._lock:
                members = self.members_of(cluster["id"])
                for pod in members:
                    self._advance_member(pod)
                views = json.loads(json.dumps(members))
            self._send_json(handler, 200, {"pods": views}, "ListPodsResponse")
        elif not tail and method == "GET":
            with self._lock:
                for pod in self.members_of(cluster["id"]):
                    self._advance_member(pod)
                view = self._cluster_view(cluster)
            self._send_json(handler, 200, view, "Cluster")
        elif not tail and method == "PATCH":
            if not self._invalid(handler, "UpdateClusterRequest", body):
                with self._lock:
                    cluster["name"] = body["name"]
                    view = self._cluster_view(cluster)
                self._send_json(handler, 200, view, "Cluster")
        elif not tail and method == "DELETE":
            with self._lock:
                for pod in self.members_of(cluster["id"]):
                    self.actions.append((pod["id"], "terminate"))
                    self._set_status(pod, "TERMINATED")
                del self.clusters[cluster["id"]]
            self._send_json(handler, 204, None, None)
        else:
            self._problem(handler, 405, "Method Not Allowed", "The requested method is not allowed for this path.")
        return True

    def _member_guard(self, handler, method: str, segments: list[str], query: dict) -> bool:
        """`GET /v2/pods` without members (unless includeClusterPods=true); members refused by DELETE and actions."""
        if len(segments) == 2 and method == "GET":
            include = query.get("includeClusterPods", ["false"])[0] == "true"
            with self._lock:
                pods = [json.loads(json.dumps(p)) for p in self.pods.values()
                        if p["status"] != "TERMINATED" and (include or not p.get("cluster"))]
            self._send_json(handler, 200, {"pods": pods}, "ListPodsResponse")
            return True
        with self._lock:
            pod = self.pods.get(segments[2]) if len(segments) > 2 else None
        member = (pod or {}).get("cluster")
        if member and pod["status"] != "TERMINATED" and (
                (len(segments) == 3 and method in ("DELETE", "PATCH")) or segments[3:] == ["action"]):
            self._problem(handler, 409, "Conflict", f"pod {pod['id']} belongs to cluster {member['id']}: it cannot "
                          f"be modified or deleted via the pod endpoints; delete the cluster via "
                          f"DELETE /v2/clusters/{member['id']}")
            return True
        return False

    # -- the cluster model --------------------------------------------------------------------
    def _create_cluster(self, handler, body) -> None:
        if self._invalid(handler, "CreateClusterRequest", body):
            return
        compute = body["compute"]
        if not body.get("image"):
            return self._problem(handler, 400, "Bad Request", "image is required (clusters take no template here)")
        if compute["gpuTypeId"] not in {g["id"] for g in self.gpus}:
            return self._problem(handler, 400, "Bad Request", f"unknown gpuTypeId {compute['gpuTypeId']!r}")
        with self._lock:
            clusters = self.clusters  # made with its id counter on first use
            cluster_id = f"cluster{next(self.__dict__['_cluster_ids']):04d}c"
            cluster = {"id": cluster_id, "name": body["name"], "type": body["type"], "compute": dict(compute),
                       "createdAt": now()}
            clusters[cluster_id] = cluster
            count = compute["podCount"]
            for rank in range(count):
                pod_id = f"pod{next(self._ids):04d}x"
                env = {**(body.get("env") or {}), "NODE_RANK": str(rank), "NODE_ADDR": self.cluster_ip(rank),
                       "NUM_NODES": str(count), "PRIMARY_ADDR": self.cluster_ip(0)}
                pod = self._new_pod(pod_id, {**body, "name": f"{body['name']}-{rank}", "env": env,
                                             "gpu": {"id": compute["gpuTypeId"], "count": compute["gpuCountPerPod"]}})
                pod["cluster"] = {"id": cluster_id, "rank": rank, "ip": self.cluster_ip(rank)}
                pod["actions"] = []
                self.pods[pod_id] = pod
            view = self._cluster_view(cluster)
        self._send_json(handler, 201, view, "Cluster")

    def _advance_member(self, pod: dict) -> None:
        before = pod["status"]
        self._advance(pod)
        if pod["status"] == "RUNNING" and before != "RUNNING" and self.cluster_ssh is not None:
            host, port = self.cluster_ssh(pod["cluster"]["rank"])
            if pod["ssh"]["direct"] is not None:
                pod["ssh"]["direct"] = {"host": host, "port": port, "username": "root",
                                        "command": f"ssh root@{host} -p {port}"}
                pod["runtime"]["ports"] = [{"private": 22, "public": port, "type": "tcp", "ip": host}]
        pod["actions"] = []  # managed through the cluster: no pod action applies

    def _cluster_view(self, cluster: dict) -> dict:
        members = self.members_of(cluster["id"])
        by_status: dict[str, int] = {}
        for pod in members:
            if pod["status"] != "TERMINATED":
                by_status[pod["status"]] = by_status.get(pod["status"], 0) + 1
        view = {**cluster, "pods": {"total": sum(by_status.values()), "byStatus": by_status},
                "network": {"cidr": "10.65.0.0/16", "vxlanId": 42, "vxlanPort": 4789}}
        if any(p["status"] == "RUNNING" for p in members):
            view["dataCenterId"] = "US-KS-2"
        if members:
            primary = members[0]
            view["primary"] = {"podId": primary["id"], "status": primary["status"]}
            direct = (primary.get("ssh") or {}).get("direct")
            if primary["status"] == "RUNNING" and direct:
                view["primary"]["sshEndpoint"] = f"{direct['host']}:{direct['port']}"
        return json.loads(json.dumps(view))
