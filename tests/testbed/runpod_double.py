"""A loopback DOUBLE of Runpod's published REST v2 contract (openapi-v2.json), for tests only.

Runpod itself is unreachable from the test machines, so this serves the endpoints podtui uses —
`GET/POST /v2/pods`, `GET/DELETE /v2/pods/{id}`, `POST /v2/pods/{id}/action`,
`GET /v2/pods/{id}/logs` (Server-Sent Events, `tail`, `Last-Event-ID`) and `GET /v2/catalog/gpus`,
plus the serverless endpoints, their workers and logs, and templates (tests/testbed/runpod_serverless.py)
— following the spec, and checks both sides of every exchange against the spec's own schemas with
jsonschema (`$ref`s resolved from the spec file, which stays outside the repo):

- a request body that breaks its schema gets the spec's 422 ErrorResponse, and is recorded in
  `request_violations`;
- a response body the double is about to send that breaks its schema is recorded in
  `response_violations` (a bug in the double; the `runpod_double` fixture fails the test on it).

It is not Runpod: pods move PROVISIONING → STARTING → RUNNING one step per `GET /v2/pods/{id}`,
and a running pod's `ssh.direct` / `runtime.ports` point wherever the test says (the test-bed
sshd). Faults can be injected (401, 429 with Retry-After, 5xx, malformed JSON, slow answers), and
every request and pod action is recorded (the idle-stop tests count `{"action": "stop"}`).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.testbed.runpod_clusters import ClusterRoutes
from tests.testbed.runpod_pod_logs import PodLogRoutes, now
from tests.testbed.runpod_serverless import ServerlessRoutes
from tests.testbed.runpod_spec import SPEC_PATH, SpecSchemas

__all__ = ["SPEC_PATH", "Fault", "RunpodDouble", "SpecSchemas"]


@dataclass
class Fault:
    status: int = 500
    times: int = 1
    method: str | None = None
    path_prefix: str | None = None
    retry_after: str | None = None
    malformed: bool = False       # 200 with a body that is not JSON
    delay_s: float = 0.0          # answer late (a timeout test sets this above the client's timeout)
    detail: str | None = None     # the ErrorResponse detail (e.g. a server echoing the request)

    def matches(self, method: str, path: str) -> bool:
        return ((self.method is None or self.method == method)
                and (self.path_prefix is None or path.startswith(self.path_prefix)))


GPUS = [
    {"id": "NVIDIA GeForce RTX 4090", "name": "RTX 4090", "pool": "ADA_24", "manufacturer": "NVIDIA",
     "memory": 24, "secure": True, "community": True, "price": {"secure": 0.69, "community": 0.34, "serverless": 1.1},
     "maxCount": {"secure": 8, "community": 4}},
    {"id": "NVIDIA A40", "name": "A40", "pool": "AMPERE_48", "manufacturer": "NVIDIA", "memory": 48,
     "secure": True, "community": False, "price": {"secure": 0.44, "community": 0.0, "serverless": 1.22},
     "maxCount": {"secure": 8, "community": 0}},
]


@dataclass
class RunpodDouble(PodLogRoutes, ServerlessRoutes, ClusterRoutes):
    api_key: str
    spec_path: Path = SPEC_PATH
    ssh_host: str = "203.0.113.7"           # where a RUNNING pod's port 22 points
    ssh_port: int = 40022
    boot_log: Callable[[str], str] | None = None   # pod id → the log a new pod prints when it runs
    steps_to_running: int = 2               # GETs of a new pod before it is RUNNING
    public_ssh: bool = True                 # False: RUNNING but never a public 22/tcp mapping
    pods: dict[str, dict] = field(default_factory=dict)
    logs: dict[str, list[dict]] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)
    actions: list[tuple[str, str]] = field(default_factory=list)
    request_violations: list[str] = field(default_factory=list)
    response_violations: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    gpus: list[dict] = field(default_factory=lambda: json.loads(json.dumps(GPUS)))  # the catalog served
    server: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        self.schemas = SpecSchemas(self.spec_path)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._steps: dict[str, int] = {}
        self._stopping = threading.Event()
        self._init_serverless()

    # -- test controls ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def inject(self, status: int = 500, **kwargs) -> Fault:
        fault = Fault(status=status, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def add_pod(self, name: str = "existing", status: str = "RUNNING", env: dict | None = None,
                cost: float = 0.69, pod_id: str | None = None) -> dict:
        pod_id = pod_id or f"pod{next(self._ids):04d}x"
        pod = self._new_pod(pod_id, {"name": name, "image": "ghcr.io/example/podtui-pod:0.1.0",
                                     "gpu": {"id": "NVIDIA GeForce RTX 4090", "count": 1},
                                     "env": env or {}, "ports": ["22/tcp"]})
        pod["cost"] = cost
        self._set_status(pod, status)
        with self._lock:
            self.pods[pod_id] = pod
        return pod

    def stops(self) -> list[str]:
        return [pod for pod, action in self.actions if action == "stop"]

    def requests_to(self, method: str, prefix: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"].startswith(prefix)]

    # -- pod model -------------------------------------------------------------------------

    def _new_pod(self, pod_id: str, body: dict) -> dict:
        gpu = body.get("gpu") or {"id": "NVIDIA GeForce RTX 4090", "count": 1}
        price = next((g["price"]["secure"] for g in GPUS if g["id"] == gpu["id"]), 0.5)
        return {
            "id": pod_id, "name": body["name"], "image": body.get("image", ""), "args": body.get("args", ""),
            "disk": body.get("disk", 20), "ports": body.get("ports", []), "env": body.get("env", {}),
            "registry": None, "status": "PROVISIONING", "actions": ["stop", "terminate"],
            "mounts": body.get("mounts", {}), "gpu": {"id": gpu["id"], "count": gpu.get("count", 1)},
            "cloud": body.get("cloud", "SECURE"), "dataCenterId": None, "cudaVersion": None,
            "ssh": {"proxy": None, "direct": None}, "template": None,
            "cost": round(price * gpu.get("count", 1), 4), "locked": False,
            "globalNetworking": {"enabled": False}, "runtime": None, "createdAt": now(), "startedAt": None,
        }

    def _set_status(self, pod: dict, status: str) -> None:
        pod["status"] = status
        pod["actions"] = {"RUNNING": ["stop", "restart", "terminate"], "EXITED": ["start", "terminate"],
                          "ERROR": ["start", "terminate"]}.get(status, ["stop", "terminate"])
        if status == "RUNNING":
            pod["dataCenterId"] = "US-KS-2"
            pod["startedAt"] = now()
            proxy = {"host": "ssh.runpod.io", "port": 22, "username": f"{pod['id']}-64411eb2",
                     "command": f"ssh {pod['id']}-64411eb2@ssh.runpod.io"}
            direct = None
            ports = []
            if self.public_ssh and "22/tcp" in pod["ports"]:
                direct = {"host": self.ssh_host, "port": self.ssh_port, "username": "root",
                          "command": f"ssh root@{self.ssh_host} -p {self.ssh_port}"}
                ports.append({"private": 22, "public": self.ssh_port, "type": "tcp", "ip": self.ssh_host})
            pod["ssh"] = {"proxy": proxy, "direct": direct}
            pod["runtime"] = {"uptime": 5, "ports": ports}
            if self.boot_log is not None and pod["id"] not in self.logs:
                self.append_log(pod["id"], self.boot_log(pod["id"]))
        else:
            pod["ssh"] = {"proxy": pod["ssh"]["proxy"] if status == "EXITED" else None, "direct": None}
            pod["runtime"] = None
            if status in ("EXITED", "TERMINATED"):
                pod["cost"] = 0.0

    def _advance(self, pod: dict) -> None:
        """Provisioning is asynchronous: each read moves a new pod one step toward RUNNING."""
        if pod["status"] not in ("PROVISIONING", "STARTING"):
            return
        steps = self._steps.get(pod["id"], 0) + 1
        self._steps[pod["id"]] = steps
        if steps >= self.steps_to_running:
            self._set_status(pod, "RUNNING")
        elif pod["status"] == "PROVISIONING":
            self._set_status(pod, "STARTING")

    # -- HTTP ------------------------------------------------------------------------------

    def start(self) -> "RunpodDouble":
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                double._handle(self, "GET")

            def do_POST(self) -> None:
                double._handle(self, "POST")

            def do_DELETE(self) -> None:
                double._handle(self, "DELETE")

            def do_PATCH(self) -> None:
                double._handle(self, "PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                         name="runpod-double").start()  # a short poll: shutdown() waits one
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def _send_json(self, handler, status: int, body: dict | None, schema: str | None,
                   headers: dict | None = None, content_type: str = "application/json") -> None:
        if body is not None and schema is not None:
            for problem in self.schemas.errors(schema, body):
                self.response_violations.append(f"{handler.command} {handler.path} → {status} {schema}: {problem}")
        data = b"" if body is None else json.dumps(body).encode()
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        if body is not None:
            handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _problem(self, handler, status: int, title: str, detail: str, errors: list[str] | None = None,
                 headers: dict | None = None) -> None:
        body = {"title": title, "status": status, "detail": detail}
        if errors:
            body["errors"] = errors
        self._send_json(handler, status, body, "ErrorResponse", headers, "application/problem+json")

    def _handle(self, handler, method: str) -> None:
        parts = urlsplit(handler.path)
        path, query = parts.path, parse_qs(parts.query)
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"<not json>": raw.decode(errors="replace")}
        auth = handler.headers.get("Authorization", "")
        with self._lock:
            self.requests.append({"method": method, "path": path, "query": query, "body": body,
                                  "authorized": auth == f"Bearer {self.api_key}",
                                  "last_event_id": handler.headers.get("Last-Event-ID")})
            fault = next((f for f in self.faults if f.times > 0 and f.matches(method, path)), None)
            if fault is not None:
                fault.times -= 1
        if fault is not None:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            if fault.malformed:
                data = b'{"pods": [ this is not json'
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)
                return
            if fault.status != 200:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
                titles = {401: "Unauthorized", 429: "Too Many Requests", 500: "Internal Server Error",
                          502: "Bad Gateway", 503: "Service Unavailable"}
                return self._problem(handler, fault.status, titles.get(fault.status, "Error"),
                                     fault.detail or f"injected {fault.status}", headers=headers)
        if auth != f"Bearer {self.api_key}":
            return self._problem(handler, 401, "Unauthorized", "missing bearer token" if not auth else "invalid api key")
        try:
            self._route(handler, method, path, query, body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self, handler, method: str, path: str, query: dict, body) -> None:
        segments = path.strip("/").split("/")
        if self._route_clusters(handler, method, segments, query, body):  # runpod_clusters.py: /v2/clusters
            return
        if segments[:2] == ["v2", "catalog"] and segments[2:] == ["gpus"] and method == "GET":
            if ("include" in query) != ("product" in query):   # the spec: 400 either way
                return self._problem(handler, 400, "Bad Request", "include=AVAILABILITY and product go together")
            return self._send_json(handler, 200, {"gpus": self.gpus}, "ListGpuTypesResponse")
        if segments[:2] in (["v2", "serverless"], ["v2", "templates"]):
            return self._route_serverless(handler, method, segments, query, body)
        if segments[:2] != ["v2", "pods"]:
            return self._problem(handler, 404, "Not Found", "resource not found")
        if len(segments) == 2 and method == "POST":   # GET /v2/pods: runpod_clusters.py (it hides members)
            return self._create(handler, body)
        pod_id = segments[2] if len(segments) > 2 else ""
        with self._lock:
            pod = self.pods.get(pod_id)
        if pod is None or pod["status"] == "TERMINATED":
            return self._problem(handler, 404, "Not Found", "pod not found")
        tail = segments[3:]
        if not tail and method == "GET":
            with self._lock:
                self._advance(pod)
                snapshot = json.loads(json.dumps(pod))
            return self._send_json(handler, 200, snapshot, "Pod")
        if not tail and method == "DELETE":
            with self._lock:
                self.actions.append((pod_id, "terminate"))
                self._set_status(pod, "TERMINATED")
            return self._send_json(handler, 204, None, None)
        if tail == ["action"] and method == "POST":
            return self._action(handler, pod, body)
        if tail == ["logs"] and method == "GET":
            return self._stream_logs(handler, pod_id, query)
        return self._problem(handler, 405, "Method Not Allowed", "The requested method is not allowed for this path.")

    def _invalid(self, handler, schema: str, body) -> bool:
        problems = self.schemas.errors(schema, body)
        if problems:
            self.request_violations.extend(f"{schema}: {p}" for p in problems)
            self._problem(handler, 422, "Unprocessable Entity", "Request validation failed.", problems)
            return True
        return False

    def _create(self, handler, body) -> None:
        if self._invalid(handler, "CreatePodRequest", body):
            return
        if bool(body.get("gpu")) == bool(body.get("cpu")):
            return self._problem(handler, 400, "Bad Request", "supply exactly one of gpu or cpu")
        mounts = body.get("mounts") or {}
        if "persistent" in mounts and "network" in mounts:
            return self._problem(handler, 400, "Bad Request", "at most one of persistent or network mounts")
        pod_id = f"pod{next(self._ids):04d}x"
        with self._lock:
            pod = self._new_pod(pod_id, body)
            self.pods[pod_id] = pod
            snapshot = json.loads(json.dumps(pod))
        self._send_json(handler, 201, snapshot, "Pod")

    def _action(self, handler, pod: dict, body) -> None:
        if self._invalid(handler, "PodActionRequest", body):
            return
        action = body["action"]
        with self._lock:
            self.actions.append((pod["id"], action))
            if action not in pod["actions"]:
                return self._problem(handler, 409, "Conflict",
                                     f"cannot {action} a pod that is {pod['status']}")
            if action == "terminate":
                self._set_status(pod, "TERMINATED")
                return self._send_json(handler, 204, None, None)
            if action == "stop":
                self._set_status(pod, "EXITED")
            elif action == "start":
                self._steps[pod["id"]] = 0
                self._set_status(pod, "PROVISIONING")
                price = next((g["price"]["secure"] for g in GPUS if g["id"] == pod["gpu"]["id"]), 0.5)
                pod["cost"] = round(price * pod["gpu"]["count"], 4)
            snapshot = json.loads(json.dumps(pod))
        self._send_json(handler, 200, snapshot, "Pod")
