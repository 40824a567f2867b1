"""The agent supervising a real koboldcpp 1.76 (the test bed's CPU build) on the tiny models: a chat
through it, swaps to llama-server and back, the drain check against its /api/extra/perf, an
out-of-memory start classified from koboldcpp's own lines, and `ctx auto` held to the context range
and cache types this version accepts (learned from its --help). Skips when koboldcpp is not built."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest

from tests.testbed import models
from tests.testbed.koboldcpp import get_json
from tests.testbed.llama import auth, chat_completion

pytestmark = pytest.mark.timeout(240)

# One malloc arena: otherwise each of koboldcpp's 24 HTTP threads reserves 64 MB of address space
# (README, "Facts about koboldcpp 1.76"); harmless without a limit.
KOBOLD_ENV = {"ENGINE": "koboldcpp", "MALLOC_ARENA_MAX": "1"}


def served_model_id(base: str, key: str) -> str:
    request = urllib.request.Request(f"{base}/v1/models", headers=auth(key))
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.load(r)["data"][0]["id"]


@pytest.fixture
def engines(tmp_path, llama_bin, koboldcpp_bin):
    """A bin dir holding both real engines."""
    directory = tmp_path / "engines"
    directory.mkdir()
    (directory / "llama-server").symlink_to(llama_bin / "llama-server")
    (directory / "koboldcpp").symlink_to(koboldcpp_bin)
    return directory


@pytest.fixture(scope="module")
def long_trained_model(tmp_path_factory):
    """A tiny model trained (says its header) to 1,048,576 tokens, more than koboldcpp accepts; heads
    of 32 so a q8_0 cache can pack them."""
    spec = models.TinyModelSpec("tiny-long", seed=1, n_head=2, n_head_kv=2, context_length=1 << 20)
    return models.ensure_model(spec, tmp_path_factory.mktemp("long"))


def test_a_chat_through_koboldcpp_then_swaps_to_llama_server_and_back(make_daemon, engines, tiny_model,
                                                                      tiny_model_b, monkeypatch):
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)   # as a daemon started by hand (the image sets it)
    daemon = make_daemon(engines, args=["--no-autostart"], env=KOBOLD_ENV)
    base = f"http://127.0.0.1:{daemon.port}"
    with daemon.client() as client:
        status = client.result("engine.start", {"model": str(tiny_model), "ctx": 2048})
        assert (status["state"], status["engine"], status["ctx"]) == ("ready", "koboldcpp", 2048)
        # koboldcpp's start-up lines reach the log while it runs, before any request, even into a pipe
        # without PYTHONUNBUFFERED: 1.76 flushes them itself, so live logs need nothing from the agent.
        events, _ = client.call("logs.tail", {"n": 1000, "source": "engine"})
        assert any("Starting Kobold API on port" in e["data"]["line"] for e in events)
        key = daemon.api_key()
        assert chat_completion(base, max_tokens=4, api_key=key)["choices"][0]["message"]["content"]

        # Without a ctx each engine picks its own; status says what it really runs, never null.
        status = client.result("engine.swap", {"model": str(tiny_model_b), "engine": "llama-server"})
        assert (status["state"], status["engine"], status["ctx"]) == ("ready", "llama-server", 4096)  # trained ctx
        assert chat_completion(base, max_tokens=4, api_key=key)["choices"]
        assert served_model_id(base, key) == "tiny-b.gguf"  # the file's name, not its path on the pod

        status = client.result("engine.swap", {"model": str(tiny_model), "engine": "koboldcpp"})
        assert (status["state"], status["engine"], status["port"]) == ("ready", "koboldcpp", daemon.port)
        assert status["ctx"] == 4096  # koboldcpp 1.76's default --contextsize
        assert chat_completion(base, max_tokens=4, api_key=key)["choices"]
        assert served_model_id(base, key) == "koboldcpp/tiny-a"


def test_a_swap_waits_for_the_generation_koboldcpp_reports_in_flight(make_daemon, engines, tiny_model, tiny_model_b):
    daemon = make_daemon(engines, env={**KOBOLD_ENV, "MODEL": str(tiny_model), "CTX": "2048"})
    daemon.wait_for_state({"ready"}, timeout=60)
    base = f"http://127.0.0.1:{daemon.port}"
    key = daemon.api_key()
    outcome = {}

    def long_request():
        body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1500,
                           "temperature": 0}).encode()
        req = urllib.request.Request(f"{base}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json", **auth(key)})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                outcome["reply"] = json.load(r)
        except Exception as exc:  # recorded and asserted below
            outcome["error"] = repr(exc)
        outcome["finished_at"] = time.monotonic()

    worker = threading.Thread(target=long_request)
    worker.start()
    deadline = time.monotonic() + 20
    while get_json(f"{base}/api/extra/perf")["idle"] != 0:
        assert time.monotonic() < deadline and worker.is_alive(), f"the generation never started: {outcome}"
        time.sleep(0.01)
    with daemon.client() as client:
        events, reply = client.call("engine.swap", {"model": str(tiny_model_b), "ctx": 2048})
    swapped_at = time.monotonic()
    worker.join(60)
    assert "result" in reply, reply
    assert "reply" in outcome, outcome                   # drained, not cut off
    assert outcome["finished_at"] <= swapped_at
    assert any(e["event"] == "progress" and e["data"].get("phase") == "drain" for e in events)
    assert reply["result"]["model"] == str(tiny_model_b) and reply["result"]["engine"] == "koboldcpp"


def test_out_of_memory_is_classified_from_koboldcpps_own_lines(make_daemon, engines, tiny_model):
    # 1000 MiB of address space stands in for VRAM: 2048 serves, 262144's compute buffer does not fit.
    daemon = make_daemon(engines, env=KOBOLD_ENV,
                         args=["--no-autostart", "--engine-address-space-limit", str(1000 << 20)])
    with daemon.client() as client:
        _, reply = client.call("engine.start", {"model": str(tiny_model), "ctx": 262144})
        assert reply["error"]["code"] == "oom", reply
        assert "exited with code 3" in reply["error"]["message"]
        assert "failed to allocate" in reply["error"]["message"] and "lower the context" in reply["error"]["message"]
        assert client.result("engine.start", {"model": str(tiny_model), "ctx": 2048})["state"] == "ready"


def test_ctx_auto_stays_within_koboldcpps_range_and_its_cache_types(make_daemon, engines, long_trained_model):
    daemon = make_daemon(engines, env=KOBOLD_ENV, args=["--no-autostart", "--memory-budget", "8GiB"])
    with daemon.client() as client:
        # Trained to 1,048,576 tokens, 8 GiB: the estimate alone would ask for all of it; 1.76 takes 262,144.
        status = client.result("engine.start", {"model": str(long_trained_model), "ctx": "auto"})
        assert status["state"] == "ready" and status["ctx"] == 262144, status
        assert status["fit"]["launches"] == 1 and status["fit"]["limited_by"] == "ctx_cap"
        serving_pid = status["pid"]

        # An explicit number above the range is refused before anything is stopped.
        _, reply = client.call("engine.swap", {"model": str(long_trained_model), "ctx": 300000})
        assert reply["error"]["code"] == "unsupported", reply
        assert "koboldcpp 1.76 accepts --contextsize 256–262144" in reply["error"]["message"]
        assert "Traceback" not in reply["error"]["message"]
        # A cache type 1.76 has no --quantkv level for: refused the same way.
        _, reply = client.call("fit.search", {"cache_type": "q5_0"})
        assert reply["error"]["code"] == "unsupported" and "q8_0 (--quantkv 1)" in reply["error"]["message"]
        status = client.result("status")
        assert (status["state"], status["pid"]) == ("ready", serving_pid)

        # q8_0 is --quantkv 1, which this koboldcpp runs (with seed 000's --flashattention).
        result = client.result("fit.search", {"cache_type": "q8_0"})
        assert result["status"] == "fits" and result["state"] == "ready" and result["ctx"] == 262144
    started = [line for line in daemon.log_text().splitlines() if "started koboldcpp" in line]
    assert "--quantkv 1" in started[-1] and "--quantkv" not in started[0]
    assert all("--useswa" not in line and "--defaultgenamt" not in line for line in started)
