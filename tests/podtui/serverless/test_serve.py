"""`podtui serve` end to end: the official `openai` client → podtui serve (a real process) → the
platform double's /openai/v1 → the real runpod SDK worker → the real llama-server. And who may use it:
loopback binds only, the local key, the Runpod key never shown and never asked of the client."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from openai import OpenAI

from tests.podtui.serverless.conftest import ENDPOINT, serverless_env, start_serve
from tests.testbed.cli import run_podtui
from tests.testbed.runpod_provider import API_KEY

pytestmark = pytest.mark.timeout(120)


def test_the_openai_client_streams_chats_and_lists_models_through_serve(warm_platform, tmp_path, serves):
    served = start_serve(serverless_env(tmp_path, warm_platform), "--health-every", "0.2s")
    serves.append(served)
    assert served.base_url.startswith("http://127.0.0.1:") and served.base_url.endswith("/v1")
    assert served.api_key.startswith("podtui-serve-") and served.api_key != API_KEY
    client = OpenAI(base_url=served.base_url, api_key=served.api_key, max_retries=0, timeout=60)

    models = [m.id for m in client.models.list()]
    assert models

    arrivals, pieces = [], []
    stream = client.chat.completions.create(model=models[0], messages=[{"role": "user", "content": "Hello"}],
                                            max_tokens=48, stream=True, extra_body={"ignore_eos": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
            pieces.append(chunk.choices[0].delta.content)
    assert len(pieces) >= 40
    chat = [j for j in warm_platform.jobs if j["input"].get("openai_route") == "/v1/chat/completions"][-1]
    chat = warm_platform.wait_for(chat["id"], timeout_s=30)
    # relayed chunk by chunk: the first token reached the client before the worker had finished
    assert arrivals[0] < chat["done"], "the answer was buffered, not streamed"
    assert arrivals[0] - chat["stream_times"][0] < 0.5

    answer = client.chat.completions.create(model=models[0], messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=8)
    assert answer.choices[0].message.content and answer.usage.completion_tokens >= 1

    served.wait_event("state", lambda e: e["to"] == "warm")
    # serve logs a request once its answer is written: the last line can trail the client's answer
    deadline = time.monotonic() + 10
    while len(served.events("request")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    requests = served.events("request")
    assert [(r["method"], r["path"].split("?")[0], r["status"]) for r in requests] == [
        ("GET", "/v1/models", 200), ("POST", "/v1/chat/completions", 200), ("POST", "/v1/chat/completions", 200)]
    assert served.interrupt() == 0
    stopped = served.events("stopped")[0]
    assert stopped["requests"] == 3 and stopped["retried"] == 0
    assert API_KEY not in served.output()
    for path in (tmp_path / "podtui-state").rglob("*"):   # podtui's log file and the local key file
        assert not path.is_file() or API_KEY not in path.read_text(errors="replace"), path


def test_clients_need_the_local_key_and_never_send_the_runpod_key(warm_platform, tmp_path, serves):
    env = serverless_env(tmp_path, warm_platform)
    served = start_serve(env, "--no-keep-warm")
    serves.append(served)
    models = f"{served.base_url}/models"
    assert httpx.get(models, timeout=10).status_code == 401
    wrong = httpx.get(models, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)   # not even Runpod's
    assert wrong.status_code == 401 and "local to" not in wrong.text and API_KEY not in wrong.text
    good = httpx.get(models, headers={"Authorization": f"Bearer {served.api_key}"}, timeout=30)
    assert good.status_code == 200 and good.json()["data"]
    # DNS rebinding: a page whose name resolves to 127.0.0.1 sends its own Host
    rebound = httpx.get(models, headers={"Authorization": f"Bearer {served.api_key}", "Host": "evil.example"},
                        timeout=10)
    assert rebound.status_code == 403
    assert httpx.get(served.base_url.removesuffix("/v1") + "/admin",
                     headers={"Authorization": f"Bearer {served.api_key}"}, timeout=10).status_code == 404
    # a browser UI on another origin may call with the key (CORS preflight answered), like the engines
    preflight = httpx.options(models, headers={"Origin": "http://localhost:5173",
                                               "Access-Control-Request-Method": "POST"}, timeout=10)
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "http://localhost:5173"
    # the same local key is kept for the next start (state dir, mode 0600)
    key_file = tmp_path / "podtui-state" / "serve-api-key"
    assert key_file.read_text().strip() == served.api_key and key_file.stat().st_mode & 0o777 == 0o600
    assert served.interrupt() == 0
    again = start_serve(env, "--no-keep-warm")
    serves.append(again)
    assert again.api_key == served.api_key
    assert again.interrupt() == 0
    assert API_KEY not in served.output() + again.output()


def test_without_a_key_foreign_origins_are_refused(warm_platform, tmp_path, serves):
    served = start_serve(serverless_env(tmp_path, warm_platform), "--no-keep-warm", "--no-api-key")
    serves.append(served)
    assert served.api_key is None
    models = f"{served.base_url}/models"
    assert httpx.get(models, timeout=30).status_code == 200
    assert httpx.get(models, headers={"Origin": "https://evil.example"}, timeout=10).status_code == 403
    assert httpx.options(models, headers={"Origin": "https://evil.example"}, timeout=10).status_code == 403
    assert served.interrupt() == 0


def _client_calls(platform) -> dict:
    """Requests on the runtime face (the worker's own long-polls keep counting)."""
    return {op: n for op, n in platform.counts.items() if op in ("run", "runsync", "status", "openai", "health")}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "example.com"])
def test_serve_refuses_to_listen_beyond_loopback(warm_platform, tmp_path, host):
    before = _client_calls(warm_platform)
    refused = run_podtui(serverless_env(tmp_path, warm_platform), "serve", ENDPOINT, "--host", host, "-p", "0",
                         timeout=20)
    assert refused.returncode == 2
    assert "loopback only" in refused.stderr and "fix: use --host 127.0.0.1" in refused.stderr
    assert _client_calls(warm_platform) == before   # refused before a single request to the endpoint


def test_a_busy_port_and_bad_durations_are_plain_errors(warm_platform, tmp_path):
    env = serverless_env(tmp_path, warm_platform)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = run_podtui(env, "serve", ENDPOINT, "-p", str(taken.getsockname()[1]), timeout=20)
    assert busy.returncode == 1 and "cannot listen on 127.0.0.1" in busy.stderr and "-p PORT" in busy.stderr
    bad = run_podtui(env, "serve", ENDPOINT, "--idle-limit", "ten minutes", "--json", timeout=20)
    assert bad.returncode == 2
    assert json.loads(bad.stderr.strip())["fix"].startswith("write it as e.g. --idle-limit 90s")


def test_a_cold_endpoint_is_woken_at_start_and_its_state_changes_are_printed(cold_platform, tmp_path, serves):
    served = start_serve(serverless_env(tmp_path, cold_platform), "--health-every", "0.2s", "--no-keep-warm")
    serves.append(served)
    sent = served.wait_event("wake_sent")
    woken = served.wait_event("woken", timeout_s=60)
    assert woken["job_id"] == sent["job_id"] and woken["delay_s"] >= 2.0
    changes = [(e["from"], e["to"]) for e in served.events("state")]
    assert changes[0] in (("unknown", "waking"), ("unknown", "cold")) and changes[-1][1] == "warm"
    assert ("waking", "warm") in changes or ("cold", "warm") in changes
    assert cold_platform.worker_starts == 1
    # the first request after the wake finds the worker warm: no second cold start
    models = httpx.get(f"{served.base_url}/models", headers={"Authorization": f"Bearer {served.api_key}"},
                       timeout=30)
    assert models.status_code == 200 and cold_platform.worker_starts == 1
    assert served.interrupt() == 0


def test_a_client_that_hangs_up_mid_stream_costs_no_traceback_and_serve_goes_on(warm_platform, tmp_path, serves):
    served = start_serve(serverless_env(tmp_path, warm_platform), "--no-keep-warm")
    serves.append(served)
    auth = {"Authorization": f"Bearer {served.api_key}"}
    body = {"model": "m", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 60, "stream": True,
            "ignore_eos": True}
    with httpx.stream("POST", f"{served.base_url}/chat/completions", json=body, headers=auth, timeout=60) as reply:
        assert reply.status_code == 200
        next(reply.iter_raw())   # one chunk, then hang up
    after = httpx.get(f"{served.base_url}/models", headers=auth, timeout=60)
    assert after.status_code == 200
    assert served.interrupt() == 0
    assert "Traceback" not in served.output() and served.events("stopped")[0]["requests"] == 2
