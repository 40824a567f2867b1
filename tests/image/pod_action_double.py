"""A loopback DOUBLE of Runpod REST v2's `POST /v2/pods/{id}/action` (Runpod is unreachable here).

It follows the published spec (the team's copy of openapi-v2.json, operation `podAction`): bearer auth,
a JSON body validated against the spec's `PodActionRequest` schema, 200 with the updated pod for
stop, 409 when the action is not valid for the pod's status, 401 without the right key. It records
every call so tests can count stops. The team's fuller double is tests/testbed/runpod_double.py;
this one covers only the call the idle watcher makes.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema

# PodActionRequest and PodAction from the spec's components/schemas (the spec lives outside the repo).
ACTION_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["action"],
    "properties": {"action": {"type": "string", "enum": ["start", "stop", "restart", "terminate"]}},
}


@dataclass
class PodActionDouble:
    pod_id: str
    api_key: str
    status: str = "RUNNING"
    calls: list[dict] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def stops(self) -> list[dict]:
        return [c for c in self.calls if c["body"] == {"action": "stop"}]

    def start(self) -> "PodActionDouble":
        schema = ACTION_SCHEMA
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                double.calls.append({"path": self.path, "body": body,
                                     "authorization": self.headers.get("Authorization")})
                if self.headers.get("Authorization") != f"Bearer {double.api_key}":
                    return self._send(401, {"error": "unauthorized"})
                if self.path != f"/v2/pods/{double.pod_id}/action":
                    return self._send(404, {"error": "not found"})
                try:
                    jsonschema.validate(body, schema)
                except jsonschema.ValidationError as exc:
                    return self._send(400, {"error": exc.message})
                if body["action"] == "stop":
                    if double.status not in ("RUNNING", "PROVISIONING", "STARTING"):
                        return self._send(409, {"error": f"cannot stop a pod that is {double.status}"})
                    double.status = "EXITED"
                return self._send(200, {"id": double.pod_id, "status": double.status,
                                        "actions": ["start", "terminate"]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
