"""`podtui serve`'s keep-alive and retries against the platform double, whose workers (the real SDK
worker before the real llama-server) start on demand and stop after the endpoint's idle timeout.
The endpoint's idle timeout and price come from the Runpod REST v2 double (spec-validated)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.podtui.serverless.conftest import ENDPOINT, serverless_env, start_serve
from tests.testbed.runpod_double import SPEC_PATH, RunpodDouble
from tests.testbed.runpod_platform import PlatformDouble
from tests.testbed.runpod_provider import API_KEY
from tests.testbed.sdk_worker import sdk_worker_factory

pytestmark = pytest.mark.timeout(120)
IDLE_TIMEOUT_S = 2   # the endpoint's workers.idleTimeout, in REST v2 and in the platform double alike


@pytest.fixture
def rest_double():
    if not SPEC_PATH.exists():
        pytest.skip(f"the Runpod REST v2 spec is not at {SPEC_PATH} (set RUNPOD_OPENAPI_SPEC)")
    double = RunpodDouble(API_KEY).start()
    double.add_endpoint("llm", endpoint_id=ENDPOINT, pools=("ADA_24",))   # $1.10 per GPU-hour (the double's catalog)
    patched = httpx.patch(f"{double.url}/v2/serverless/{ENDPOINT}", json={"workers": {"idleTimeout": IDLE_TIMEOUT_S}},
                          headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
    assert patched.status_code == 200, patched.text
    yield double
    double.stop()
    assert double.request_violations == [] and double.response_violations == []


def _models_jobs(platform: PlatformDouble) -> int:
    return sum(1 for j in platform.jobs if j["input"] == {"openai_route": "/v1/models"})


def test_keep_alive_holds_one_worker_then_stops_after_its_idle_limit(llama_server, tmp_path, rest_double, serves):
    factory = sdk_worker_factory(llama_server.port, log_dir=tmp_path / "workers")
    with PlatformDouble(ENDPOINT, API_KEY, worker_factory=factory, idle_timeout_s=IDLE_TIMEOUT_S) as platform:
        served = start_serve(serverless_env(tmp_path, platform, rest_double.url),
                             "--idle-limit", "5s", "--health-every", "0.2s")
        serves.append(served)
        plan = served.wait_event("keep_warm", lambda e: e["on"])
        assert plan["idle_timeout_s"] == IDLE_TIMEOUT_S and plan["interval_s"] == 1.0   # max(1, 2 − 2)
        assert plan["price_per_hr"] == 1.1 and plan["max_cost_per_pause_usd"] == round(5 / 3600 * 1.1, 4)
        served.wait_event("woken", timeout_s=60)
        off = served.wait_event("keep_warm", lambda e: not e["on"], timeout_s=30)
        # pings, not requests, kept the worker up past its 2 s idle timeout, and the cost is theirs
        assert off["pings"] >= 2 and off["kept_warm_s"] >= off["pings"] * 0.9
        assert off["cost_usd"] == pytest.approx(off["kept_warm_s"] / 3600 * 1.1, abs=1e-4)   # both rounded
        assert platform.worker_starts == 1 and len(served.events("ping")) == off["pings"]
        after_off = _models_jobs(platform)
        served.wait_event("state", lambda e: e["to"] == "cold", timeout_s=IDLE_TIMEOUT_S + 10)   # the worker went
        assert _models_jobs(platform) == after_off   # no ping after keep-alive stopped

        # the next request turns keep-alive on again and wakes the endpoint
        models = httpx.get(f"{served.base_url}/models", headers={"Authorization": f"Bearer {served.api_key}"},
                           timeout=60)
        assert models.status_code == 200 and platform.worker_starts == 2
        again = served.wait_event("keep_warm", lambda e: e["on"] and e["reason"] == "a request arrived")
        assert again["price_per_hr"] == 1.1
        assert served.interrupt() == 0
        assert served.events("stopped")[0]["pings"] >= off["pings"]
        assert API_KEY not in served.output()


def test_no_keep_warm_sends_no_pings(warm_platform, tmp_path, serves):
    served = start_serve(serverless_env(tmp_path, warm_platform), "--no-keep-warm", "--ping-every", "0.2s",
                         "--health-every", "0.1s")
    serves.append(served)
    served.wait_event("woken")
    time.sleep(1.0)
    assert served.events("ping") == [] and served.events("keep_warm") == []
    assert served.interrupt() == 0


def test_a_price_podtui_cannot_read_is_said_and_seconds_still_counted(warm_platform, tmp_path, serves):
    served = start_serve(serverless_env(tmp_path, warm_platform), "--ping-every", "0.3s", "--idle-limit", "1.2s",
                         "--health-every", "0.1s")
    serves.append(served)
    plan = served.wait_event("keep_warm", lambda e: e["on"])
    assert plan["price_per_hr"] is None and "cannot reach Runpod" in plan["note"]
    off = served.wait_event("keep_warm", lambda e: not e["on"])
    assert off["pings"] >= 1 and off["cost_usd"] is None and off["kept_warm_s"] > 0
    assert served.interrupt() == 0


def test_requests_a_cold_endpoint_refuses_are_retried_until_a_worker_answers(llama_server, tmp_path, serves):
    """The double answers 504 when an /openai job is not done within openai_timeout_s (it ASSUMES
    so: Runpod does not document that timeout, SERVERLESS.md §2.1); serve sends the request again."""
    factory = sdk_worker_factory(llama_server.port, log_dir=tmp_path / "workers")
    with PlatformDouble(ENDPOINT, API_KEY, worker_factory=factory, cold_start_s=1.0,
                        openai_timeout_s=1.5) as platform:
        served = start_serve(serverless_env(tmp_path, platform), "--no-keep-warm", "--retries", "10",
                             "--retry-wait", "0.5s")
        serves.append(served)
        answer = httpx.get(f"{served.base_url}/models", headers={"Authorization": f"Bearer {served.api_key}"},
                           timeout=60)
        assert answer.status_code == 200 and answer.json()["data"]
        retries = served.events("retry")
        assert retries and all(r["reason"] == "HTTP 504" for r in retries)
        assert served.wait_event("request")["status"] == 200
        assert served.interrupt() == 0


def test_retries_are_bounded_and_a_generation_is_never_sent_twice(tmp_path, serves):
    with PlatformDouble(ENDPOINT, API_KEY, openai_timeout_s=0.3) as platform:   # no worker ever comes
        served = start_serve(serverless_env(tmp_path, platform), "--no-keep-warm", "--retries", "2",
                             "--retry-wait", "0.1s")
        serves.append(served)
        auth = {"Authorization": f"Bearer {served.api_key}"}
        answer = httpx.get(f"{served.base_url}/models", headers=auth, timeout=30)
        assert answer.status_code == 504
        assert [r["attempt"] for r in served.events("retry")] == [1, 2]
        assert platform.counts["openai"] == 3
        assert served.wait_event("request")["status"] == 504
        # a 504 leaves the job queued at Runpod, where it would still run and be billed: not sent again
        chat = httpx.post(f"{served.base_url}/chat/completions", headers=auth, timeout=30,
                          json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
        assert chat.status_code == 504 and platform.counts["openai"] == 4 and len(served.events("retry")) == 2
        assert served.interrupt() == 0


def test_no_ping_is_queued_behind_the_wake_job_while_a_worker_starts(cold_platform, tmp_path, serves):
    served = start_serve(serverless_env(tmp_path, cold_platform), "--ping-every", "0.3s", "--health-every", "0.1s")
    serves.append(served)
    served.wait_event("woken", timeout_s=60)
    kinds = [e["event"] for e in served.events()]
    assert "ping" not in kinds[:kinds.index("woken")]   # pings only once a worker answered
    served.wait_event("ping")   # and then they flow
    assert cold_platform.worker_starts == 1 and served.interrupt() == 0
