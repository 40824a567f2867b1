"""The serverless half of the Runpod REST v2 DOUBLE (tests/testbed/runpod_double.py mixes it in).

It serves, on loopback and for tests only, what the spec (openapi-v2.json) says about
`/v2/serverless` (GET list, POST 201, GET one, PATCH, DELETE 204), `/v2/serverless/{id}/workers`,
a worker's log `/v2/serverless/{id}/workers/{workerId}/logs` (SSE with `source`, `tail`, `since`,
`Last-Event-ID`; event ids are the lines' timestamps, as the spec says) and `/v2/templates`
(POST 201, GET, GET one, DELETE 204, or 400 while bound to an endpoint). Every request body is
validated against the spec's schemas by the double's `_invalid`, every response by `_send_json`.

What the double ASSUMES where the spec is silent (it is not Runpod):
- an endpoint created with an inline image gets a serverless template "bound" to it, listed by
  `GET /v2/templates`; `DELETE /v2/serverless/{id}` deletes it (the spec: "and its bound template");
- an unknown pool id in `gpu.pools` is a 400, like an unknown `excludedTypes` entry;
- a PATCH of `image`/`env`/`args`/`disk` bumps the endpoint's version and marks its workers stale.
Workers exist only when a test says so (`set_workers`); nothing here runs a job.
Test hooks: `add_endpoint`, `set_workers`, `append_worker_log`, `drop_log_after` (the next log
stream closes mid-chunk after N events), `create_drift` (a function that alters what a create
stores: Runpod once made GPU endpoints when CPU was asked, SERVERLESS.md §5 #10).
"""

from __future__ import annotations

import copy
import json
import time
from datetime import datetime, timedelta, timezone

CONTAINER_FIELDS = ("image", "env", "args", "disk", "ports", "registry")


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ServerlessRoutes:
    """Endpoint, worker, worker-log and template state and routes of the REST v2 double."""

    def _init_serverless(self) -> None:
        self.endpoints: dict[str, dict] = {}
        self.templates: dict[str, dict] = {}
        self.bound: dict[str, str] = {}                 # endpoint id → its bound template id
        self.endpoint_workers: dict[str, list[dict]] = {}
        self.worker_logs: dict[tuple[str, str], list[dict]] = {}
        self.create_drift = None
        self.log_drops: list[int] = []
        self._versions: dict[str, int] = {}
        self._last_ts = datetime.now(timezone.utc)

    # -- test controls ---------------------------------------------------------------------

    def add_endpoint(self, name: str = "llm", *, workers_max: int = 3, pools: tuple = ("ADA_24",),
                     env: dict | None = None, endpoint_id: str | None = None) -> dict:
        body = {"name": name, "type": "QUEUE", "image": "ghcr.io/example/podtui-pod:0.1.0",
                "env": env if env is not None else {"MODE_TO_RUN": "serverless", "MODEL": "org/repo:Q4_K_M"},
                "gpu": {"pools": list(pools)}, "workers": {"min": 0, "max": workers_max, "idleTimeout": 5},
                "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4}}
        with self._lock:
            return copy.deepcopy(self._store_endpoint(body, endpoint_id))

    def set_workers(self, endpoint_id: str, statuses: list) -> list[dict]:
        """Workers of an endpoint: each a status word (ids w1, w2, …) or an (id, status) pair."""
        workers = []
        for n, item in enumerate(statuses, 1):
            worker_id, status = item if isinstance(item, tuple) else (f"w{n}", item)
            placed = status not in ("THROTTLED",)
            workers.append({"id": worker_id, "status": status, "isStale": False, "version": 1, "gpuCount": 1,
                            "image": self.endpoints[endpoint_id]["image"],
                            "uptimeSeconds": 30 if placed else None,
                            "gpuTypeId": "NVIDIA GeForce RTX 4090" if placed else None,
                            "dataCenterId": "US-KS-2" if placed else None,
                            "startedAt": _ts(datetime.now(timezone.utc)) if placed else None})
        with self._lock:
            self.endpoint_workers[endpoint_id] = workers
        return workers

    def append_worker_log(self, endpoint_id: str, worker_id: str, text: str, source: str = "container") -> None:
        with self._lock:
            entries = self.worker_logs.setdefault((endpoint_id, worker_id), [])
            for line in text.splitlines():
                self._last_ts = max(datetime.now(timezone.utc), self._last_ts + timedelta(microseconds=1))
                ts = _ts(self._last_ts)
                entries.append({"id": ts, "data": {"source": source, "line": line, "ts": ts}})

    def drop_log_after(self, events: int) -> None:
        with self._lock:
            self.log_drops.append(events)

    # -- state ---------------------------------------------------------------------------

    def _store_endpoint(self, body: dict, endpoint_id: str | None = None) -> dict:
        endpoint_id = endpoint_id or f"ep{next(self._ids):04d}qz"
        gpu = body.get("gpu")
        endpoint = {
            "id": endpoint_id, "name": body["name"], "type": body["type"],
            "image": body.get("image", ""), "env": dict(body.get("env") or {}), "args": body.get("args", ""),
            "disk": body.get("disk", 20), "ports": body.get("ports", []), "registry": body.get("registry"),
            "workers": {"min": 0, "max": 3, "idleTimeout": 10, **(body.get("workers") or {})},
            "scaling": body["scaling"], "dataCenterIds": body.get("dataCenterIds", []),
            "networkVolumes": body.get("networkVolumes", []), "timeout": body.get("timeout", 300000),
            "flashboot": body.get("flashboot", "OFF"), "createdAt": _ts(datetime.now(timezone.utc)),
            "requestUrls": {k: f"https://api.runpod.ai/v2/{endpoint_id}/{path}" for k, path in (
                ("run", "run"), ("runSync", "runsync"), ("status", "status/{job_id}"), ("stream", "stream/{job_id}"),
                ("cancel", "cancel/{job_id}"), ("retry", "retry/{job_id}"), ("purgeQueue", "purge-queue"),
                ("health", "health"))},
        }
        if body["scaling"]["type"] == "REQUEST_COUNT" and body["type"] == "QUEUE":
            endpoint["workers"].pop("idleTimeout", None)
        if gpu:
            endpoint["gpu"] = {"pools": gpu["pools"], "excludedTypes": gpu.get("excludedTypes", []),
                               "count": gpu.get("count", 1), "allowedCudaVersions": gpu.get("allowedCudaVersions", []),
                               "minCudaVersion": gpu.get("minCudaVersion")}
        else:
            endpoint["gpu"] = None
            endpoint["cpu"] = [{**c, "memory": 2 * c["vcpuCount"]} for c in body["cpu"]]
        if self.create_drift is not None:
            self.create_drift(endpoint)
        template_id = f"tpl{next(self._ids):04d}bd"
        self.templates[template_id] = self._template(template_id, {
            "name": f"{body['name']} (bound to endpoint {endpoint_id})", "image": endpoint["image"],
            "env": endpoint["env"], "disk": endpoint["disk"], "serverless": True})
        self.bound[endpoint_id] = template_id
        self.endpoints[endpoint_id] = endpoint
        self._versions[endpoint_id] = 1
        return endpoint

    @staticmethod
    def _template(template_id: str, body: dict) -> dict:
        return {"id": template_id, "name": body["name"], "image": body["image"], "args": body.get("args", ""),
                "disk": body.get("disk", 20), "mounts": body.get("mounts", {}), "ports": body.get("ports", []),
                "env": dict(body.get("env") or {}), "registry": body.get("registry"),
                "serverless": body.get("serverless", False), "public": body.get("public", False),
                "category": body.get("category", "NVIDIA"), "startSsh": body.get("startSsh", True),
                "startJupyter": body.get("startJupyter", True),
                "allowedCudaVersions": body.get("allowedCudaVersions", [])}

    def _pools(self) -> set[str]:
        return {g["pool"] for g in self.gpus if g.get("pool")}

    def _gpu_problem(self, gpu: dict | None) -> str | None:
        if not gpu:
            return None
        if gpu.get("allowedCudaVersions") and gpu.get("minCudaVersion"):
            return "allowedCudaVersions and minCudaVersion are mutually exclusive"
        unknown = [p for p in gpu.get("pools") or () if p not in self._pools()]
        if unknown:
            return f"unknown GPU pool(s): {', '.join(unknown)}"
        in_pools = {g["id"] for g in self.gpus if g.get("pool") in (gpu.get("pools") or ())}
        stray = [t for t in gpu.get("excludedTypes") or () if t.strip() not in in_pools]
        return f"excludedTypes not in the selected pools: {', '.join(stray)}" if stray else None

    # -- routes --------------------------------------------------------------------------

    def _route_serverless(self, handler, method: str, segments: list[str], query: dict, body) -> None:
        if segments[1] == "templates":
            return self._route_templates(handler, method, segments[2:], body)
        rest = segments[2:]
        if not rest:
            if method == "GET":
                with self._lock:
                    listed = copy.deepcopy(list(self.endpoints.values()))
                return self._send_json(handler, 200, {"endpoints": listed}, "ListEndpointsResponse")
            if method == "POST":
                return self._create_endpoint(handler, body)
            return self._problem(handler, 405, "Method Not Allowed", "The requested method is not allowed for this path.")
        with self._lock:
            endpoint = self.endpoints.get(rest[0])
        if endpoint is None:
            return self._problem(handler, 404, "Not Found", "endpoint not found")
        if len(rest) == 1 and method == "GET":
            with self._lock:
                snapshot = copy.deepcopy(endpoint)
            return self._send_json(handler, 200, snapshot, "Endpoint")
        if len(rest) == 1 and method == "PATCH":
            return self._patch_endpoint(handler, endpoint, body)
        if len(rest) == 1 and method == "DELETE":
            with self._lock:
                self.endpoints.pop(endpoint["id"], None)
                self.templates.pop(self.bound.pop(endpoint["id"], ""), None)
                self.endpoint_workers.pop(endpoint["id"], None)
            return self._send_json(handler, 204, None, None)
        if rest[1:] == ["workers"] and method == "GET":
            with self._lock:
                workers = copy.deepcopy(self.endpoint_workers.get(endpoint["id"], []))
                version = self._versions.get(endpoint["id"], 1)
            summary = {s.lower(): sum(w["status"] == s for w in workers)
                       for s in ("RUNNING", "IDLE", "INITIALIZING", "THROTTLED", "UNHEALTHY")}
            summary["total"] = len(workers)
            return self._send_json(handler, 200, {"workers": workers, "summary": summary, "endpointVersion": version},
                                   "ListEndpointWorkersResponse")
        if len(rest) == 4 and rest[1] == "workers" and rest[3] == "logs" and method == "GET":
            with self._lock:
                known = any(w["id"] == rest[2] for w in self.endpoint_workers.get(endpoint["id"], []))
            if not known:
                return self._problem(handler, 404, "Not Found", "worker not found")
            return self._stream_worker_log(handler, (endpoint["id"], rest[2]), query)
        return self._problem(handler, 405, "Method Not Allowed", "The requested method is not allowed for this path.")

    def _create_endpoint(self, handler, body) -> None:
        if self._invalid(handler, "CreateEndpointRequest", body):
            return
        if bool(body.get("gpu")) == bool(body.get("cpu")):
            return self._problem(handler, 400, "Bad Request", "supply exactly one of gpu or cpu")
        problem = self._gpu_problem(body.get("gpu"))
        if body["type"] == "QUEUE" and body["scaling"]["type"] == "REQUEST_COUNT" and \
                "idleTimeout" in (body.get("workers") or {}):
            problem = "idleTimeout does not apply to queue endpoints scaling on requestCount"
        if problem:
            return self._problem(handler, 400, "Bad Request", problem)
        if body.get("templateId"):
            with self._lock:
                template = self.templates.get(body["templateId"])
            if template is None:
                return self._problem(handler, 404, "Not Found", "template not found")
            if not template["serverless"]:
                return self._problem(handler, 422, "Unprocessable Entity", "template is not a serverless template")
            body = {**{k: template[k] for k in CONTAINER_FIELDS}, **body,
                    "env": {**template["env"], **(body.get("env") or {})}}
        with self._lock:
            snapshot = copy.deepcopy(self._store_endpoint(body))
        self._send_json(handler, 201, snapshot, "Endpoint")

    def _patch_endpoint(self, handler, endpoint: dict, body) -> None:
        if self._invalid(handler, "UpdateEndpointRequest", body):
            return
        if ("gpu" in body and endpoint.get("cpu")) or ("cpu" in body and endpoint.get("gpu")):
            return self._problem(handler, 400, "Bad Request", "the compute family of an endpoint cannot change")
        problem = self._gpu_problem(body.get("gpu") if body.get("gpu", {}).get("pools") else None)
        if problem:
            return self._problem(handler, 400, "Bad Request", problem)
        with self._lock:
            for key in ("name", "scaling", "timeout", "flashboot", "networkVolumes", "dataCenterIds", "cpu",
                        *CONTAINER_FIELDS):
                if key in body:
                    endpoint[key] = body[key]
            if "workers" in body:
                endpoint["workers"].update(body["workers"])
            if "gpu" in body:
                gpu = endpoint["gpu"]
                if "pools" in body["gpu"]:
                    gpu["excludedTypes"] = body["gpu"].get("excludedTypes", [])
                gpu.update({k: v for k, v in body["gpu"].items() if k != "excludedTypes"})
            if any(key in body for key in CONTAINER_FIELDS):
                self._versions[endpoint["id"]] = self._versions.get(endpoint["id"], 1) + 1
                for worker in self.endpoint_workers.get(endpoint["id"], []):
                    worker["isStale"] = True
            snapshot = copy.deepcopy(endpoint)
        self._send_json(handler, 200, snapshot, "Endpoint")

    def _route_templates(self, handler, method: str, rest: list[str], body) -> None:
        if not rest and method == "GET":
            with self._lock:
                listed = copy.deepcopy(list(self.templates.values()))
            return self._send_json(handler, 200, {"templates": listed}, "ListTemplatesResponse")
        if not rest and method == "POST":
            if self._invalid(handler, "CreateTemplateRequest", body):
                return
            with self._lock:
                template = self._template(f"tpl{next(self._ids):04d}us", body)
                self.templates[template["id"]] = template
            return self._send_json(handler, 201, copy.deepcopy(template), "Template")
        with self._lock:
            template = self.templates.get(rest[0]) if len(rest) == 1 else None
            bound_to = [e for e, t in self.bound.items() if rest and t == rest[0]]
        if template is None:
            return self._problem(handler, 404, "Not Found", "template not found")
        if method == "GET":
            return self._send_json(handler, 200, copy.deepcopy(template), "Template")
        if method == "DELETE":
            if bound_to:
                return self._problem(handler, 400, "Bad Request", f"template is bound to endpoint {bound_to[0]}")
            with self._lock:
                self.templates.pop(template["id"], None)
            return self._send_json(handler, 204, None, None)
        return self._problem(handler, 405, "Method Not Allowed", "The requested method is not allowed for this path.")

    def _stream_worker_log(self, handler, key: tuple[str, str], query: dict) -> None:
        """SSE, chunked: backfill (after Last-Event-ID, else since `since`, else the last `tail`),
        then live lines; a queued drop closes the connection mid-stream after N events."""
        try:
            tail = int(query.get("tail", ["100"])[0])
        except ValueError:
            return self._problem(handler, 400, "Bad Request", "tail must be an integer")
        source = query.get("source", [None])[0]
        if not 0 <= tail <= 5000 or source not in (None, "container", "system"):
            return self._problem(handler, 400, "Bad Request", "tail must be 0-5000 and source container or system")
        with self._lock:
            entries = list(self.worker_logs.get(key, []))
            drop_after = self.log_drops.pop(0) if self.log_drops else None
        cursor = handler.headers.get("Last-Event-ID") or query.get("since", [None])[0]
        start = sum(e["id"] <= cursor for e in entries) if cursor else max(0, len(entries) - tail)
        handler.send_response(200)
        for name, value in (("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                            ("Transfer-Encoding", "chunked")):
            handler.send_header(name, value)
        handler.end_headers()
        handler.close_connection = True
        sent, written = start, 0
        while not self._stopping.is_set():
            with self._lock:
                entries = list(self.worker_logs.get(key, []))
            for entry in entries[sent:]:
                if source is not None and entry["data"]["source"] != source:
                    continue
                if drop_after is not None and written >= drop_after:
                    return   # no terminating chunk: the client sees a connection dropped mid-stream
                data = f"id: {entry['id']}\ndata: {json.dumps(entry['data'])}\n\n".encode()
                handler.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
                written += 1
            handler.wfile.flush()
            sent = len(entries)
            time.sleep(0.05)
