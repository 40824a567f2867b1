"""An RPC cluster on loopback, all real: a chat through the server's llama-server over two backends,
a backend killed mid-stream (the server names it, pauses instead of crash-looping, and serves again
once the backend's own agent has restarted it), and a backend frozen mid-stream (the liveness check
finds llama-server stuck, the server names the silent backend, and it serves again after SIGCONT)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.testbed.llama import chat_completion
from tests.testbed.rpc import engine_pid, stream_tokens, wait_until

pytestmark = pytest.mark.timeout(120)


def _starts(cluster) -> int:
    return cluster.server.log_text().count("started llama-server")


def test_a_chat_goes_through_both_backends_and_status_shows_the_cluster(cluster):
    reply = chat_completion(cluster.base_url, api_key=cluster.server.api_key(), max_tokens=8)
    assert reply["choices"][0]["message"]["content"]
    status = cluster.status()
    assert status["role"] == "server" and status["state"] == "ready"
    assert status["cluster"]["protocol"] == "7.0.0" and status["cluster"]["build"].startswith("0.5.0-dev")
    assert [(b["endpoint"], b["state"], b["protocol"]) for b in status["cluster"]["backends"]] == [
        (endpoint, "answers", "7.0.0") for endpoint in cluster.endpoints]
    assert status["cluster"]["gpu_layers"] == 99
    assert "--rpc " + ",".join(cluster.endpoints) in cluster.server.log_text()
    for backend in cluster.backends:
        lent = cluster.status(backend)
        assert lent["role"] == "backend" and lent["state"] == "ready" and lent["api_key_required"] is False
        assert lent["cluster"]["protocol"] == "7.0.0" and lent["cluster"]["devices"][0]["total_mib"] > 0
        with backend.client() as client:  # its own output, line-buffered through stdbuf: it served a client
            events, _ = client.call("logs.tail", {"source": "engine", "n": 200})
        lines = [event["data"]["line"] for event in events]
        assert "Starting RPC server v7.0.0" in lines and "Accepted client connection" in lines


def test_a_backend_killed_mid_stream_is_named_and_the_server_resumes_without_crash_looping(cluster):
    cluster.server.wait_for_state({"ready"}, timeout=30)
    victim, victim_endpoint = cluster.backends[1], cluster.endpoints[1]
    victim_pid = engine_pid(victim)
    starts_before = _starts(cluster)
    chunks = 0
    for _ in stream_tokens(cluster.base_url, cluster.server.api_key(), max_tokens=3000):
        chunks += 1
        if chunks == 10:
            os.kill(victim_pid, signal.SIGKILL)
            killed_at = time.monotonic()
    assert 10 <= chunks < 3000, "the stream should be cut by the backend's death"
    paused = cluster.server.wait_for_state({"paused"}, timeout=10)
    assert paused["last_error"]["backend"] == victim_endpoint
    assert paused["last_error"]["kind"] == "backend_unreachable"
    assert f"backend {victim_endpoint} is unreachable" in paused["last_error"]["message"]
    named_after = time.monotonic() - killed_at
    # llama-server's own abort line names no backend; the agent asked them and found this one down
    assert "Remote RPC server crashed or returned malformed response" in cluster.server.log_text()
    # the backend's agent restarts its ggml-rpc-server after its backoff; the server then resumes by itself
    ready = cluster.server.wait_for_state({"ready"}, timeout=20)
    assert engine_pid(victim) != victim_pid
    assert _starts(cluster) == starts_before + 1, "one start after the backend came back, no crash loop"
    assert ready["cluster"]["backends"][1]["state"] == "answers"
    assert chat_completion(cluster.base_url, api_key=cluster.server.api_key(), max_tokens=4)["choices"]
    assert named_after < 5


def test_a_frozen_backend_is_found_by_the_liveness_check_within_seconds_and_serves_again_after_sigcont(cluster):
    cluster.server.wait_for_state({"ready"}, timeout=30)
    frozen, frozen_endpoint = cluster.backends[0], cluster.endpoints[0]
    frozen_pid = engine_pid(frozen)
    chunks = 0
    for _ in stream_tokens(cluster.base_url, cluster.server.api_key(), max_tokens=3000, timeout=30):
        chunks += 1
        if chunks == 10:
            os.kill(frozen_pid, signal.SIGSTOP)
            frozen_at = time.monotonic()
            break
    try:
        hung = wait_until(lambda: (s := cluster.status())["last_error"] and s["last_error"]["kind"] == "backend_hung"
                          and s, timeout=12, what="the liveness check finding llama-server stuck")
        detected_after = time.monotonic() - frozen_at
        assert detected_after < 10, f"detected after {detected_after:.1f}s"
        paused = cluster.server.wait_for_state({"paused"}, timeout=10)
        assert paused["last_error"]["backend"] == frozen_endpoint
        assert "does not answer the RPC handshake" in paused["last_error"]["message"]
        assert "made no progress for" in hung["last_error"]["message"]
    finally:
        os.kill(frozen_pid, signal.SIGCONT)
    cluster.server.wait_for_state({"ready"}, timeout=20)
    assert engine_pid(frozen) == frozen_pid, "the frozen backend survived (SIGPIPE ignored) and was not restarted"
    assert chat_completion(cluster.base_url, api_key=cluster.server.api_key(), max_tokens=4)["choices"]


def test_a_backend_frozen_while_idle_is_found_by_the_one_token_probe(cluster):
    cluster.server.wait_for_state({"ready"}, timeout=30)
    frozen_pid = engine_pid(cluster.backends[1])
    os.kill(frozen_pid, signal.SIGSTOP)  # nobody is asking: only the agent's 1-token probe can notice
    frozen_at = time.monotonic()
    try:
        paused = cluster.server.wait_for_state({"paused"}, timeout=15)
        assert time.monotonic() - frozen_at < 10
        assert paused["last_error"]["backend"] == cluster.endpoints[1]
        assert "made no progress" in cluster.server.log_text().rsplit("liveness:", 1)[1]
    finally:
        os.kill(frozen_pid, signal.SIGCONT)
    cluster.server.wait_for_state({"ready"}, timeout=20)
