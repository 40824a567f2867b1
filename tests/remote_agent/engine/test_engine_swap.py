"""Hot-swap and supervision on the real llama-server with the tiny models."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request

import pytest

from tests.testbed.llama import auth, chat_completion

pytestmark = pytest.mark.timeout(120)


def slots_busy(port: int, api_key: str) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/slots", headers=auth(api_key))
    with urllib.request.urlopen(request, timeout=2) as r:
        return any(slot["is_processing"] for slot in json.load(r))


def served_model(port: int, api_key: str) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models", headers=auth(api_key))
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.load(r)["data"][0]["id"]


def test_swap_waits_for_the_request_in_flight_and_serves_b_after_ready(make_daemon, llama_bin, tiny_model,
                                                                      tiny_model_b):
    daemon = make_daemon(llama_bin, env={"MODEL": str(tiny_model), "CTX": "4096"})
    daemon.wait_for_state({"ready"})
    base = f"http://127.0.0.1:{daemon.port}"
    key = daemon.api_key()
    outcome = {}

    def long_request():
        body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2000,
                           "ignore_eos": True, "temperature": 0}).encode()
        req = urllib.request.Request(f"{base}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json", **auth(key)})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                outcome["tokens"] = json.load(r)["usage"]["completion_tokens"]
        except Exception as exc:  # recorded and asserted below
            outcome["error"] = repr(exc)
        outcome["finished_at"] = time.monotonic()

    worker = threading.Thread(target=long_request)
    worker.start()
    deadline = time.monotonic() + 10
    while not slots_busy(daemon.port, key):
        assert time.monotonic() < deadline, "the long request never started"
        time.sleep(0.01)

    client = daemon.client()
    events, reply = client.call("engine.swap", {"model": str(tiny_model_b), "ctx": 2048})
    swapped_at = time.monotonic()
    worker.join(30)

    assert "result" in reply, reply
    assert outcome.get("tokens") == 2000, outcome  # the in-flight request was drained, not cut
    assert outcome["finished_at"] <= swapped_at
    assert any(e["event"] == "progress" and e["data"].get("phase") == "drain" for e in events)
    states = [e["data"]["state"] for e in events if e["event"] == "state"]
    assert states[-3:] == ["stopping", "starting", "ready"]
    assert reply["result"]["state"] == "ready" and reply["result"]["model"] == str(tiny_model_b)
    assert reply["result"]["ctx"] == 2048 and reply["result"]["port"] == daemon.port
    failures = []
    for _ in range(5):  # after `ready` every request succeeds, on the same port
        try:
            chat_completion(base, max_tokens=4, api_key=key)
        except Exception as exc:
            failures.append(repr(exc))
    assert failures == []
    assert served_model(daemon.port, key).endswith("tiny-b.gguf")
    assert daemon.api_key() == key  # the swap kept the key


def test_swap_to_a_corrupt_model_rolls_back_and_a_keeps_serving(make_daemon, llama_bin, tiny_model, tmp_path):
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(4096))  # right magic, garbage after it
    daemon = make_daemon(llama_bin, env={"MODEL": str(tiny_model), "CTX": "1024"})
    first = daemon.wait_for_state({"ready"})
    client = daemon.client()

    events, reply = client.call("engine.swap", {"model": str(corrupt)})

    assert reply["error"]["code"] == "bad_model", reply
    assert f"rolled back to {tiny_model}, which keeps serving" in reply["error"]["message"]
    assert any(e["event"] == "state" and e["data"]["state"] == "rolling_back" for e in events)
    status = client.result("status")
    assert status["state"] == "ready" and status["model"] == str(tiny_model)
    assert status["pid"] != first["pid"] and status["last_error"]["kind"] == "bad_model"
    assert chat_completion(f"http://127.0.0.1:{daemon.port}", max_tokens=4, api_key=daemon.api_key())["choices"]


def test_swap_to_a_file_that_is_not_gguf_is_refused_before_the_engine_is_touched(make_daemon, llama_bin,
                                                                                  tiny_model, tmp_path):
    text_file = tmp_path / "notes.gguf"
    text_file.write_text("not a model")
    daemon = make_daemon(llama_bin, env={"MODEL": str(tiny_model), "CTX": "1024"})
    first = daemon.wait_for_state({"ready"})
    _, reply = daemon.client().call("engine.swap", {"model": str(text_file)})
    assert reply["error"]["code"] == "not_gguf", reply
    assert daemon.wait_for_state({"ready"})["pid"] == first["pid"]  # never stopped


def test_an_engine_killed_with_sigkill_is_restarted(make_daemon, llama_bin, tiny_model):
    daemon = make_daemon(llama_bin, env={"MODEL": str(tiny_model), "CTX": "1024"},
                         args=["--restart-backoff", "0.2"])
    first = daemon.wait_for_state({"ready"})
    os.kill(first["pid"], signal.SIGKILL)
    restarted = daemon.wait_for_state({"ready"}, pred=lambda s: s["pid"] not in (None, first["pid"]))
    assert restarted["model"] == str(tiny_model)
    assert restarted["last_error"]["kind"] == "crashed" and "SIGKILL" in restarted["last_error"]["message"]
    assert chat_completion(f"http://127.0.0.1:{daemon.port}", max_tokens=4, api_key=daemon.api_key())["choices"]


def test_state_is_restored_after_a_daemon_restart(make_daemon, llama_bin, tiny_model, tiny_model_b, tmp_path):
    env = {"MODEL": str(tiny_model), "CTX": "1024"}
    daemon = make_daemon(llama_bin, env=env, root=tmp_path / "pod")
    daemon.wait_for_state({"ready"})
    assert "result" in daemon.client().call("engine.swap", {"model": str(tiny_model_b), "ctx": 512})[1]
    old_pid = daemon.client().result("status")["pid"]
    daemon.stop()  # SIGTERM: the daemon stops its engine but keeps the saved config
    with pytest.raises(OSError):
        os.kill(old_pid, 0)

    again = make_daemon(llama_bin, env=env, root=tmp_path / "pod", port=daemon.port)
    status = again.wait_for_state({"ready"})
    assert status["model"] == str(tiny_model_b) and status["ctx"] == 512
    assert served_model(again.port, again.api_key()).endswith("tiny-b.gguf")


def test_out_of_memory_is_classified_under_an_address_space_limit(make_daemon, llama_bin, tiny_model):
    daemon = make_daemon(llama_bin, args=["--no-autostart", "--engine-address-space-limit", str(1_500_000 * 1024)])
    client = daemon.client()
    _, reply = client.call("engine.start", {"model": str(tiny_model), "ctx": 1048576})
    assert reply["error"]["code"] == "oom", reply
    assert "lower the context" in reply["error"]["message"]
    status = client.result("status")
    assert status["state"] == "failed" and status["last_error"]["kind"] == "oom"
    # the same limit holds a small context: the failure was memory, not the model
    assert client.result("engine.start", {"model": str(tiny_model), "ctx": 2048})["state"] == "ready"
