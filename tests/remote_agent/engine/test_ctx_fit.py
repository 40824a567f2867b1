"""`ctx auto` and `fit.search` in the real daemon, on the real llama-server whose memory is an
address-space limit (the CPU stand-in for a GPU's free memory, see tests/testbed/fit_standin.py).

The daemon runs the engine the way the stand-in does, through its own settings: one malloc arena
(MALLOC_ARENA_MAX in the daemon's environment, which the engine inherits), 1 MiB thread stacks
(--engine-stack-limit), two threads (ARGS), and the stand-in's measured overhead
(--engine-overhead).
"""

from __future__ import annotations

import json
import shutil
import urllib.request

import pytest

from remote_agent.fit.estimate import RunConfig
from tests.testbed.fit_standin import STACK_BYTES, calibrate_overhead
from tests.testbed.llama import auth, chat_completion

MiB = 1 << 20
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def overhead_flag(llama_bin, tiny_model) -> str:
    """The stand-in's overhead, measured on tiny-a (not the models the searches run on)."""
    overhead = calibrate_overhead(llama_bin, tiny_model, RunConfig(token_embd_on_device=True))
    return f"{overhead.base_bytes}+{overhead.per_token_bytes}"


def standin_daemon(make_daemon, llama_bin, limit: int, overhead: str | None, env=None, autostart=False, **kw):
    args = ["--engine-address-space-limit", str(limit), "--engine-stack-limit", str(STACK_BYTES)]
    if overhead is not None:
        args += ["--engine-overhead", overhead]
    if not autostart:
        args.append("--no-autostart")
    env = {"MALLOC_ARENA_MAX": "1", "ARGS": "-t 2 --threads-http 2 --no-warmup", **(env or {})}
    return make_daemon(llama_bin, env=env, args=args, **kw)


def fit_messages(events: list[dict]) -> list[str]:
    return [e["data"]["message"] for e in events if e["event"] == "progress" and e["data"].get("phase") == "fit"]


def engine_ctx(daemon) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{daemon.port}/props", headers=auth(daemon.api_key()))
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.load(r)["default_generation_settings"]["n_ctx"]


def test_swap_auto_loads_near_the_limit_then_a_second_swap_reuses_the_remembered_fit(
        make_daemon, llama_bin, fit_small_model, fit_large_model, overhead_flag):
    daemon = standin_daemon(make_daemon, llama_bin, 450 * MiB, overhead_flag)
    client = daemon.client()
    events, reply = client.call("engine.swap", {"model": str(fit_small_model), "ctx": "auto"})
    assert "result" in reply, reply
    first = reply["result"]
    fit = first["fit"]
    assert first["state"] == "ready" and first["ctx"] == fit["ctx"] and fit["ctx"] % 256 == 0
    assert 1 <= fit["launches"] <= 2 and not fit["cached"]
    assert fit["budget_bytes"] == 450 * MiB and fit["budget_source"] == "address-space"
    assert fit["ctx"] > 150_000  # the bench's true max for fit-small f16 at 450 MiB is 245760
    messages = fit_messages(events)
    assert messages[0] == f"trying {fit['estimate']['first_ctx']}"
    assert any("fits" in m for m in messages)
    # the config left running is the one the search proved, launched once for that ctx
    assert engine_ctx(daemon) == fit["ctx"]
    assert chat_completion(f"http://127.0.0.1:{daemon.port}", max_tokens=4, api_key=daemon.api_key())["choices"]
    assert daemon.log_text().count(f"--ctx-size {fit['ctx']} ") == 1
    assert "--n-gpu-layers 999" in daemon.log_text() and "--fit off" in daemon.log_text()

    assert client.result("engine.swap", {"model": str(fit_large_model), "ctx": 2048})["ctx"] == 2048
    launches_before = daemon.log_text().count("started llama-server")
    events, reply = client.call("engine.swap", {"model": str(fit_small_model), "ctx": "auto"})
    again = reply["result"]
    assert again["fit"]["cached"] and again["fit"]["launches"] == 1 and again["ctx"] == fit["ctx"]
    assert fit_messages(events)[0] == f"remembered fit: trying {fit['ctx']}"
    assert daemon.log_text().count("started llama-server") == launches_before + 1  # no search
    assert engine_ctx(daemon) == fit["ctx"]

    # fresh: searches again
    _, reply = client.call("engine.swap", {"model": str(fit_small_model), "ctx": "auto", "fresh": True})
    assert reply["result"]["fit"]["cached"] is False


def test_an_oom_in_the_daemon_is_recomputed_from_the_failed_allocation(make_daemon, llama_bin, fit_large_model):
    # No overhead given: the first prediction overshoots the limit by the engine's own bookkeeping.
    daemon = standin_daemon(make_daemon, llama_bin, 900 * MiB, None)
    events, reply = daemon.client().call("engine.start", {"model": str(fit_large_model), "ctx": "auto"})
    assert "result" in reply, reply
    fit = reply["result"]["fit"]
    assert fit["attempts"][0]["ok"] is False and fit["attempts"][0]["failed_bytes"] > 0
    assert fit["attempts"][1]["ok"] is True and fit["launches"] <= 3
    assert fit["attempts"][-1]["ctx"] == fit["ctx"] == reply["result"]["ctx"]
    assert any(m.startswith(f"OOM at {fit['attempts'][0]['ctx']}: ") and "more" in m for m in fit_messages(events))
    assert reply["result"]["state"] == "ready" and engine_ctx(daemon) == fit["ctx"]


def test_fit_search_returns_the_figures_and_respects_the_ctx_cap(make_daemon, llama_bin, fit_small_model,
                                                                 overhead_flag, tiny_model):
    daemon = standin_daemon(make_daemon, llama_bin, 450 * MiB, overhead_flag, env={"CTX": "50000"})
    client = daemon.client()
    # CTX as a number is the upper bound of an auto search
    started = client.result("engine.start", {"model": str(fit_small_model), "ctx": "auto"})
    assert started["ctx"] == 49920 and started["fit"]["limited_by"] == "ctx_cap"
    events, reply = client.call("fit.search", {"ctx_max": 8192, "cache_type": "q8_0"})
    result = reply["result"]
    assert (result["ctx"], result["launches"], result["cached"]) == (8192, 1, False)
    assert result["limited_by"] == "ctx_cap" and result["state"] == "ready" and result["model"] == str(fit_small_model)
    assert result["budget_bytes"] == 450 * MiB and result["estimate"]["need_bytes"] < 450 * MiB
    assert fit_messages(events)[0] == "trying 8192"
    status = client.result("status")
    assert status["state"] == "ready" and status["ctx"] == 8192 and engine_ctx(daemon) == 8192
    assert "-ctk q8_0" in daemon.log_text()
    # bad params are refused before anything runs
    _, reply = client.call("fit.search", {"cache_type": "q3"})
    assert reply["error"]["code"] == "bad_params" and "q8_0" in reply["error"]["message"]
    # so is a cache type the model's head size (16 here) cannot pack: the serving engine is never stopped
    serving_pid = client.result("status")["pid"]
    _, reply = client.call("fit.search", {"model": str(tiny_model), "cache_type": "q8_0"})
    assert reply["error"]["code"] == "fit_error", reply
    assert "head size divisible by 32" in reply["error"]["message"] and "rolled back" not in reply["error"]["message"]
    assert client.result("status")["pid"] == serving_pid
    # a search that cannot fit while a model serves rolls back to it, like any failed swap
    _, reply = client.call("fit.search", {"budget_bytes": 8 * MiB})
    assert reply["error"]["code"] == "oom" and reply["error"]["message"].startswith("model needs ")
    assert "rolled back to" in reply["error"]["message"]
    status = client.result("status")
    assert status["state"] == "ready" and status["ctx"] == 8192 and engine_ctx(daemon) == 8192


def test_nothing_fits_pauses_with_what_the_model_needs_and_the_daemon_lives(make_daemon, llama_bin, fit_large_model,
                                                                            overhead_flag):
    daemon = standin_daemon(make_daemon, llama_bin, 80 * MiB, overhead_flag)
    client = daemon.client()
    _, reply = client.call("engine.start", {"model": str(fit_large_model), "ctx": "auto"})
    assert reply["error"]["code"] == "oom", reply
    assert reply["error"]["message"].startswith("model needs ") and "80 MiB free" in reply["error"]["message"]
    status = client.result("status")
    assert status["state"] == "paused" and "model needs " in status["last_error"]["message"]
    assert "started llama-server" not in daemon.log_text()  # no launch, let alone a crash loop
    assert daemon.alive()


def test_ctx_auto_at_boot_that_cannot_fit_is_paused_not_retried(make_daemon, llama_bin, fit_large_model, overhead_flag):
    daemon = standin_daemon(make_daemon, llama_bin, 80 * MiB, overhead_flag, autostart=True,
                            env={"MODEL": str(fit_large_model), "CTX": "auto"})
    status = daemon.wait_for_state({"paused"})
    assert "model needs " in status["last_error"]["message"]
    assert "started llama-server" not in daemon.log_text() and daemon.alive()


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU budget")
def test_auto_without_a_gpu_or_budget_says_what_to_pass(make_daemon, llama_bin, tiny_model):
    daemon = make_daemon(llama_bin, args=["--no-autostart"])
    _, reply = daemon.client().call("engine.start", {"model": str(tiny_model), "ctx": "auto"})
    assert reply["error"]["code"] == "no_budget", reply
    assert "--memory-budget" in reply["error"]["message"]
    assert daemon.client().result("status")["state"] == "stopped"
