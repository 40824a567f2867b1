"""podtui's runtime client (podtui/providers/runpod_runtime.py) against the platform double, with the
real SDK worker and llama-server behind it where a job must run: jobs, cancel, stream + status,
health, every refusal, and 429 back-off (a fault injector in front of the double)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from podtui.providers.runpod_api import ApiKey, ApiKeyRejected, RetryPolicy
from podtui.providers.runpod_runtime import EndpointNotFound, JobProblem, JobWaitTimeout, RuntimeClient
from tests.podtui.serverless.conftest import ENDPOINT
from tests.testbed.runpod_platform import PlatformDouble
from tests.testbed.runpod_provider import API_KEY

pytestmark = pytest.mark.timeout(120)


def client_for(base: str, key: str = API_KEY, endpoint: str = ENDPOINT, waits: list | None = None,
               notes: list | None = None) -> RuntimeClient:
    waits = waits if waits is not None else []
    return RuntimeClient(ApiKey(key, "test"), endpoint, base, timeout_s=10,
                         retry=RetryPolicy(max_retries=3, backoff_s=0.01, max_retry_after_s=2.0),
                         sleep=lambda s: (waits.append(s), time.sleep(min(s, 0.05)))[1],
                         on_wait=notes.append if notes is not None else None)


@pytest.fixture
def idle_platform():
    """An endpoint nobody works for: jobs stay IN_QUEUE."""
    with PlatformDouble(ENDPOINT, API_KEY) as platform:
        yield platform


def test_a_warm_endpoint_runs_the_wake_job_and_reports_its_times(warm_platform):
    client = client_for(f"{warm_platform.base_url}/v2")
    try:
        job = client.run({"openai_route": "/v1/models"}, {"ttl": 300000, "executionTimeout": 30000})
        assert job.status == "IN_QUEUE" and not job.terminal
        final = client.wait(job.id, timeout_s=30, poll_s=0.05)
        assert final.status == "COMPLETED" and final.delay_ms is not None and final.execution_ms is not None
        output = client.result(final)
        models = output[0] if isinstance(output, list) else output   # return_aggregate_stream wraps it (§2.5)
        assert models["data"][0]["id"]
        health = client.health()
        assert health.worker("idle") + health.worker("running") >= 1 and health.job("completed") >= 1
    finally:
        client.close()


def test_stream_yields_the_chunks_then_reads_status_for_the_error(warm_platform):
    client = client_for(f"{warm_platform.base_url}/v2")
    try:
        job = client.run({"prompt": "Hello", "answerType": "stream", "max_tokens": 16})   # seed 001
        chunks = list(client.stream(job.id, timeout_s=60, wait_ms=500))
        assert chunks and all(isinstance(c, dict) and "text" in c for c in chunks)
        # A job the worker fails: the error is only in /status (runpod-python#397, §5 #6)
        bad = client.run({"openai_route": "/v1/no-such-route", "openai_input": {"x": 1}})
        with pytest.raises(JobProblem, match="FAILED") as failed:
            list(client.stream(bad.id, timeout_s=60, wait_ms=500))
        assert failed.value.status.status == "FAILED" and "logs" in failed.value.fix
    finally:
        client.close()


def test_cancel_is_terminal_and_result_says_so(idle_platform):
    client = client_for(f"{idle_platform.base_url}/v2")
    try:
        job = client.run({"openai_route": "/v1/models"})
        assert client.cancel(job.id).status == "CANCELLED"
        final = client.wait(job.id, timeout_s=5, poll_s=0.05)   # CANCELLED ends the wait (the SDK's would not)
        with pytest.raises(JobProblem, match="CANCELLED"):
            client.result(final)
    finally:
        client.close()


def test_a_wait_past_its_deadline_raises_with_the_last_status(idle_platform):
    client = client_for(f"{idle_platform.base_url}/v2")
    try:
        job = client.run({"openai_route": "/v1/models"})
        began = time.monotonic()
        with pytest.raises(JobWaitTimeout) as timed_out:
            client.wait(job.id, timeout_s=0.5, poll_s=0.1)
        assert time.monotonic() - began < 3 and timed_out.value.status.status == "IN_QUEUE"
    finally:
        client.close()


def test_completed_without_output_points_at_the_worker_logs(idle_platform):
    """runpod-python#309: the worker's result POST lost → COMPLETED, no output. Played here by a
    worker that takes the job over the queue face and posts a job-done without output."""
    client = client_for(f"{idle_platform.base_url}/v2")
    try:
        job = client.run({"openai_route": "/v1/models"})
        queue = f"{idle_platform.base_url}/v2/{ENDPOINT}"
        auth = {"Authorization": idle_platform.worker_key}
        taken = httpx.get(f"{queue}/job-take/wx?gpu=SIM&job_in_progress=0", headers=auth, timeout=5)
        assert taken.json()["id"] == job.id
        httpx.post(f"{queue}/job-done/wx/{job.id}?gpu=SIM&isStream=false", content="{}", headers=auth, timeout=5)
        final = client.wait(job.id, timeout_s=5, poll_s=0.05)
        assert final.status == "COMPLETED" and not final.has_output
        with pytest.raises(JobProblem, match="no output") as lost:
            client.result(final)
        assert f"podtui endpoints logs {ENDPOINT}" in lost.value.fix
    finally:
        client.close()


def test_refusals_are_typed_and_never_show_the_key(idle_platform):
    base = f"{idle_platform.base_url}/v2"
    wrong = "rpa_WRONG_KEY_1234567890"
    with _closing(client_for(base, key=wrong)) as client:
        with pytest.raises(ApiKeyRejected) as rejected:
            client.health()
        assert wrong not in rejected.value.title + rejected.value.fix
    with _closing(client_for(base, endpoint="nosuchendpoint")) as client:
        with pytest.raises(EndpointNotFound, match="nosuchendpoint"):
            client.health()
    with _closing(client_for(base)) as client:
        with pytest.raises(JobProblem, match="no longer has job"):
            client.status("job-999")
        assert API_KEY not in repr(client)


class _closing:
    def __init__(self, client: RuntimeClient) -> None:
        self.client = client

    def __enter__(self) -> RuntimeClient:
        return self.client

    def __exit__(self, *exc) -> None:
        self.client.close()


class RateLimiter:
    """A FAULT INJECTOR, not Runpod: answers the first `times` requests 429 (Retry-After: 0.2, as
    §3.2's rate limits do), then relays each request to the platform double unchanged."""

    def __init__(self, upstream: str, times: int) -> None:
        self.left = times
        self.seen = 0
        limiter = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _relay(self) -> None:
                limiter.seen += 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if limiter.left > 0:
                    limiter.left -= 1
                    self._answer(429, b'{"error":"rate limited"}', {"Retry-After": "0.2"})
                    return
                reply = httpx.request(self.command, upstream + self.path, content=body,
                                      headers={"Authorization": self.headers.get("Authorization", ""),
                                               "Content-Type": "application/json"}, timeout=10)
                self._answer(reply.status_code, reply.content, {})

            def _answer(self, status: int, body: bytes, headers: dict) -> None:
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", "Content-Length": str(len(body)),
                                    **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_429_is_waited_out_with_retry_after_then_the_job_is_queued_once(idle_platform):
    limiter = RateLimiter(idle_platform.base_url, times=2)
    waits: list[float] = []
    notes: list[str] = []
    client = client_for(f"{limiter.url}/v2", waits=waits, notes=notes)
    try:
        job = client.run({"openai_route": "/v1/models"})
        assert waits == [0.2, 0.2] and len(notes) == 2 and "rate limit" in notes[0]
        assert [j["id"] for j in idle_platform.jobs] == [job.id]   # the 429s queued nothing
    finally:
        client.close()
        limiter.close()


def test_the_openai_route_carries_the_runpod_key_as_bearer(warm_platform):
    client = client_for(f"{warm_platform.base_url}/v2")
    try:
        response = client.openai_request("GET", "/models")
        try:
            assert response.status_code == 200
            assert json.loads(response.read())["data"]
        finally:
            response.close()
    finally:
        client.close()
