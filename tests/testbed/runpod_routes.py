"""The HTTP routes of the Runpod Serverless DOUBLE (runpod_platform.py, which says what it assumes).

A mixin for BaseHTTPRequestHandler (HTTP/1.1 keep-alive, as the SDK's aiohttp session reuses its
connections): `platform` is the PlatformDouble, whose PlatformState (runpod_queue.py) holds the jobs.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

from tests.testbed.runpod_queue import TERMINAL, Job

QUEUE_OPS = ("job-take", "job-take-batch", "job-stop", "job-done", "job-stream", "ping")
RUNSYNC_WAIT_MS = (1000, 90000, 300000)  # min, default, max (§3.2)


class RouteMixin:
    platform: Any  # the PlatformDouble; set by the handler class runpod_platform.py builds

    def log_message(self, *args) -> None:  # quiet: tests read counts and jobs instead
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    # -- plumbing -----------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.platform.stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value, separators=(",", ":")).encode())

    def _authorized(self, key: str) -> bool:
        given = self.headers.get("Authorization", "")
        return given in (key, f"Bearer {key}")

    def _route(self, method: str) -> None:
        platform = self.platform
        url = urlsplit(self.path)
        query = {k: v for k, _, v in (p.partition("=") for p in url.query.split("&") if p)}
        segments = url.path.strip("/").split("/")
        body = self._body()
        if len(segments) < 3 or segments[0] != "v2" or segments[1] != platform.endpoint_id:
            return self._json(404, {"error": f"no route {method} {url.path}"})
        op, rest = segments[2], segments[3:]
        with platform.state.lock:
            platform.state.counts[op] += 1
        if op in QUEUE_OPS:
            if not self._authorized(platform.worker_key):
                return self._json(401, {"error": "worker key refused"})
            return self._queue(op, rest, query, body)
        if not self._authorized(platform.api_key):
            return self._json(401, {"error": "Unauthorized: send Authorization: Bearer <Runpod API key>"})
        return self._runtime(method, op, rest, query, body)

    # -- the job-queue face (the SDK worker) --------------------------------------------------------
    def _queue(self, op: str, rest: list[str], query: dict, body: bytes) -> None:
        platform, state = self.platform, self.platform.state
        worker_id = rest[0] if rest else "?"
        if op in ("job-take", "job-take-batch"):
            n = int(query.get("batch_size") or 1) if op == "job-take-batch" else 1
            jobs = state.take(worker_id, n, platform.long_poll_s, platform.stopping)
            if not jobs:
                return self._send(204)
            taken = [{"id": job.id, "input": job.input} for job in jobs]
            return self._json(200, taken if op == "job-take-batch" else taken[0])
        if op == "job-stop":
            ids = state.stop_signals(worker_id, platform.stop_poll_s, platform.stopping)
            return self._json(200, {"jobsToStop": ids}) if ids else self._send(204)
        if op == "ping":
            with state.cond:
                state.seen(worker_id)
            return self._json(200, {})
        try:
            parsed = json.loads(body.decode("utf-8"))  # form-encoded in name only (§1.6)
        except ValueError:
            return self._json(400, {"error": "body is not JSON"})
        job_id = rest[1] if len(rest) > 1 else ""
        (state.result if op == "job-done" else state.stream)(job_id, parsed)
        return self._json(200, {})

    # -- the runtime face (clients) -----------------------------------------------------------------
    def _runtime(self, method: str, op: str, rest: list[str], query: dict, body: bytes) -> None:
        platform, state = self.platform, self.platform.state
        if op == "health" and method == "GET":
            return self._json(200, platform.health())
        if op == "openai":
            return self._openai(method, rest, body)
        if op in ("run", "runsync") and method == "POST":
            try:
                request = json.loads(body or b"null")
            except ValueError:
                return self._json(400, {"error": "the body is not JSON"})
            if not isinstance(request, dict) or "input" not in request:
                return self._json(400, {"error": 'the body must be {"input": {...}}'})
            job_id = platform.submit(request["input"], request.get("policy"))
            if op == "run":
                return self._json(200, {"id": job_id, "status": "IN_QUEUE"})
            low, default, high = RUNSYNC_WAIT_MS
            wait_ms = min(max(int(query.get("wait") or default), low), high)
            return self._json(200, self._wait_view(job_id, wait_ms / 1000))
        if op == "purge-queue" and method == "POST":
            return self._json(200, {"removed": state.purge(), "status": "completed"})
        job = state.jobs.get(rest[0]) if rest else None
        if job is None:
            return self._json(404, {"error": f"no job {rest[0] if rest else ''!r} on this endpoint"})
        if op == "status" and method == "GET":
            return self._json(200, self._view(job))
        if op == "cancel" and method == "POST":
            state.cancel(job.id)
            return self._json(200, {"id": job.id, "status": job.status})
        if op == "stream" and method == "GET":
            return self._json(200, self._drain(job, int(query.get("wait") or 0) / 1000))
        return self._json(404, {"error": f"no route {method} /{op}"})

    def _view(self, job: Job) -> dict:
        with self.platform.state.lock:
            return job.view()

    def _wait_view(self, job_id: str, wait_s: float) -> dict:
        state = self.platform.state
        with state.cond:
            job = state.jobs[job_id]
            state.cond.wait_for(lambda: job.status in TERMINAL or self.platform.stopping.is_set(), wait_s)
            return job.view() if job.status in TERMINAL else {"id": job.id, "status": job.status}

    def _drain(self, job: Job, wait_s: float) -> dict:
        state = self.platform.state
        with state.cond:
            state.cond.wait_for(lambda: len(job.chunks) > job.drained or job.status in TERMINAL, wait_s)
            new = job.chunks[job.drained:]
            job.drained += len(new)
            return {"status": job.status, "stream": [{"output": output} for _, output in new]}

    def _openai(self, method: str, rest: list[str], body: bytes) -> None:
        platform, state = self.platform, self.platform.state
        route = "/" + "/".join(rest)
        job_input: dict[str, Any] = {"openai_route": route}
        payload = None
        if body.strip():
            try:
                payload = json.loads(body)
            except ValueError:
                return self._json(400, {"error": "the body is not JSON"})
        if method == "POST" and payload is not None:
            job_input["openai_input"] = payload
        job_id = platform.submit(job_input)
        job = state.jobs[job_id]
        deadline = time.monotonic() + platform.openai_timeout_s
        streaming = isinstance(payload, dict) and bool(payload.get("stream"))
        with state.cond:
            state.cond.wait_for(lambda: (streaming and job.chunks) or job.status in TERMINAL
                                or platform.stopping.is_set(), platform.openai_timeout_s)
            status, chunks = job.status, list(job.chunks)
        if streaming and chunks:
            return self._sse(job, deadline)
        if status not in TERMINAL:
            return self._json(504, {"error": f"{job_id} is still {status} after {platform.openai_timeout_s:g} s",
                                    "status": status})
        if status != "COMPLETED":
            return self._json(500, {"error": job.error, "status": status})
        output = job.output
        if isinstance(output, list) and len(output) == 1:
            output = output[0]
        if isinstance(output, str):
            return self._send(200, output.encode(), "text/plain; charset=utf-8")
        return self._json(200, output)

    def _sse(self, job: Job, deadline: float) -> None:
        state, stopping = self.platform.state, self.platform.stopping
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # the end of the body is the end of the stream
        self.end_headers()
        self.close_connection = True
        sent = 0
        while True:
            with state.cond:
                state.cond.wait_for(lambda: len(job.chunks) > sent or job.status in TERMINAL or stopping.is_set(),
                                    max(0.0, deadline - time.monotonic()))
                new = [output for _, output in job.chunks[sent:]]
                sent += len(new)
                over = job.status in TERMINAL or stopping.is_set() or time.monotonic() > deadline
            try:
                for output in new:
                    text = output if isinstance(output, str) else f"data: {json.dumps(output)}\n\n"
                    self.wfile.write(text.encode())
                self.wfile.flush()
            except OSError:  # the client went away
                return
            if over and not new:
                return
