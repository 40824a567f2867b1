"""status.idle_s: the daemon's activity clock, measured on the real llama-server.

podtui's footer warns "idle N min, still billing" from this figure, so it must grow while nobody
uses the engine and fall back to ~0 once a real chat request is served (seen through /slots).
"""

from __future__ import annotations

import time

import pytest

from tests.testbed.llama import chat_completion

pytestmark = pytest.mark.timeout(90)


def idle_s(daemon) -> float | None:
    with daemon.client() as client:
        return client.result("status")["idle_s"]


def wait_for(pred, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_idle_seconds_grow_without_requests_and_reset_after_one(make_daemon, llama_bin, tiny_model):
    daemon = make_daemon(llama_bin, env={"MODEL": str(tiny_model), "CTX": "2048"}, args=["--idle-poll", "0.2"])
    daemon.wait_for_state({"ready"})
    assert wait_for(lambda: (idle_s(daemon) or 0) >= 2), "idle_s should grow while nobody asks anything"

    # the clock sees it through /slots, which answers only requests that carry the engine's key
    chat_completion(f"http://127.0.0.1:{daemon.port}", "Hello", max_tokens=4, api_key=daemon.api_key())
    assert wait_for(lambda: (value := idle_s(daemon)) is not None and value < 1, timeout=5)
