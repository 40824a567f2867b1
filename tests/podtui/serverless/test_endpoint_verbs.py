"""`podtui endpoints health | wake | test` as real processes against the platform double, with the real
SDK worker starting after a simulated cold start and the real llama-server answering."""

from __future__ import annotations

import json

import pytest

from tests.podtui.serverless.conftest import ENDPOINT, serverless_env
from tests.testbed.cli import run_podtui
from tests.testbed.runpod_platform import PlatformDouble
from tests.testbed.runpod_provider import API_KEY

pytestmark = pytest.mark.timeout(120)


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_wake_a_cold_endpoint_reports_the_cold_start_and_health_before_and_after(cold_platform, tmp_path):
    env = serverless_env(tmp_path, cold_platform)
    before = run_podtui(env, "endpoints", "health", ENDPOINT, "--json")
    assert before.returncode == 0, before.stderr
    state = json.loads(before.stdout)
    assert state["state"] == "cold" and state["workers"]["idle"] == 0 and cold_platform.worker_starts == 0

    woke = run_podtui(env, "endpoints", "wake", ENDPOINT, "--timeout", "60", "--json")
    assert woke.returncode == 0, woke.stderr
    result = json.loads(woke.stdout)
    assert result["cold"] is True and result["state_before"] == "cold"
    assert result["delay_s"] >= 2.0            # the double's 2 s cold start, plus the worker's start
    assert result["total_s"] >= result["delay_s"] and result["models"]   # the real llama-server's model list
    events = _json_lines(woke.stderr)
    assert [e["event"] for e in events][:2] == ["state", "queued"]
    assert any(e["event"] == "waiting" for e in events)   # progress while the worker starts
    assert cold_platform.worker_starts == 1

    after = run_podtui(env, "endpoints", "health", ENDPOINT, "--json")
    assert json.loads(after.stdout)["state"] == "warm"
    text = run_podtui(env, "endpoints", "health", ENDPOINT)
    assert text.stdout.splitlines()[0] == f"endpoint {ENDPOINT}: warm" and "idle 1" in text.stdout
    assert API_KEY not in before.stdout + before.stderr + woke.stdout + woke.stderr + text.stdout + text.stderr


def test_wake_in_words_says_it_waits_for_a_cold_start(cold_platform, tmp_path):
    woke = run_podtui(serverless_env(tmp_path, cold_platform), "endpoints", "wake", ENDPOINT, "--timeout", "60")
    assert woke.returncode == 0, woke.stderr
    assert "waiting for a worker (cold start)" in woke.stderr
    assert woke.stdout.startswith(f"endpoint {ENDPOINT} is warm: cold start: a worker started")


def test_wake_times_out_when_no_worker_comes_and_cancels_its_job(tmp_path):
    with PlatformDouble(ENDPOINT, API_KEY) as platform:   # nobody works for this endpoint
        woke = run_podtui(serverless_env(tmp_path, platform), "endpoints", "wake", ENDPOINT, "--timeout", "1.5")
        assert woke.returncode == 1
        assert "still IN_QUEUE after" in woke.stderr and "fix:" in woke.stderr
        assert [job["status"] for job in platform.jobs] == ["CANCELLED"]
        assert "Traceback" not in woke.stderr


def test_health_names_why_jobs_wait_in_the_queue(tmp_path):
    with PlatformDouble(ENDPOINT, API_KEY) as platform:
        platform.submit({"openai_route": "/v1/models"})
        shown = run_podtui(serverless_env(tmp_path, platform), "endpoints", "health", ENDPOINT, "--json")
        state = json.loads(shown.stdout)
        assert state["state"] == "cold" and state["jobs"]["inQueue"] == 1
        assert state["diagnosis"]["cause"] == "no worker allocated yet"   # diagnose_queue's words
        words = run_podtui(serverless_env(tmp_path, platform), "endpoints", "health", ENDPOINT)
        assert "queue    no worker allocated yet:" in words.stdout


def test_test_streams_a_chat_completion_and_times_it(warm_platform, tmp_path):
    env = serverless_env(tmp_path, warm_platform)
    shown = run_podtui(env, "endpoints", "test", ENDPOINT, "--max-tokens", "12", "--json")
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)
    assert summary["tokens"] >= 1 and summary["first_token_s"] is not None and summary["model"]
    assert summary["total_s"] >= summary["first_token_s"] and summary["models_s"] is not None
    chat = [j for j in warm_platform.jobs if j["input"].get("openai_route") == "/v1/chat/completions"][-1]
    assert chat["input"]["openai_input"]["stream"] is True and chat["input"]["openai_input"]["model"] == summary["model"]
    assert len(chat["stream"]) >= summary["tokens"]      # the worker streamed what the client counted

    words = run_podtui(env, "endpoints", "test", ENDPOINT, "--max-tokens", "8", "--model", summary["model"])
    assert words.returncode == 0, words.stderr
    last = words.stdout.splitlines()[-1]
    assert last.startswith(f"model {summary['model']}: first token ") and "tokens/s" in last or "rate" in last
    assert API_KEY not in shown.stdout + shown.stderr + words.stdout + words.stderr


def test_bad_key_and_unknown_endpoint_are_plain_errors(warm_platform, tmp_path):
    env = {**serverless_env(tmp_path, warm_platform), "RUNPOD_API_KEY": "rpa_WRONG_0123456789"}
    refused = run_podtui(env, "endpoints", "health", ENDPOINT)
    assert refused.returncode == 1 and "API key rejected" in refused.stderr and "fix:" in refused.stderr
    assert "rpa_WRONG_0123456789" not in refused.stderr
    missing = run_podtui(serverless_env(tmp_path, warm_platform), "endpoints", "wake", "other-ep", "--json")
    assert missing.returncode == 1 and missing.stdout == ""
    error = json.loads(missing.stderr.strip().splitlines()[-1])
    assert error["event"] == "error" and "no serverless endpoint other-ep" in error["error"]
    bad_id = run_podtui(serverless_env(tmp_path, warm_platform), "endpoints", "health", "../etc")
    assert bad_id.returncode == 1 and "is not a Runpod endpoint id" in bad_id.stderr


def test_an_endpoint_is_found_by_its_name_through_rest(warm_platform, tmp_path):
    from tests.testbed.runpod_double import RunpodDouble

    rest = RunpodDouble(API_KEY).start()
    try:
        rest.add_endpoint("my-llm", endpoint_id=ENDPOINT)
        env = serverless_env(tmp_path, warm_platform, rest.url)
        shown = run_podtui(env, "endpoints", "health", "my-llm", "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["endpoint"] == ENDPOINT
        unknown = run_podtui(env, "endpoints", "health", "no such llm")
        assert unknown.returncode == 1 and "no serverless endpoint has the id or name 'no such llm'" in unknown.stderr
    finally:
        rest.stop()
