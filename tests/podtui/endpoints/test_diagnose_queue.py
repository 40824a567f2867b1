"""diagnose_queue reads the workers view the REST client fetched from the double
(`GET /v2/serverless/{id}/workers`): one cause per state a queued job can be stuck behind
(SERVERLESS.md §3.4, §5 #2), and the raw JSON works the same as the parsed view."""

from __future__ import annotations

import pytest

from podtui.providers.runpod_endpoints import RunpodEndpoints
from podtui.services import endpoints as svc

CASES = [
    (["UNHEALTHY", "IDLE", "INITIALIZING"], svc.CAUSE_CRASH_LOOP, "logs ep --worker w1"),
    (["THROTTLED", "THROTTLED"], svc.CAUSE_NO_CAPACITY, "--gpu POOL"),
    (["THROTTLED", "INITIALIZING"], svc.CAUSE_COLD_START, "RUNPOD_INIT_TIMEOUT"),
    ([], svc.CAUSE_NO_WORKER, "queue delay"),
    (["RUNNING", "RUNNING"], svc.CAUSE_BUSY, "MAX_CONCURRENCY"),
    (["IDLE", "RUNNING"], svc.CAUSE_IDLE, "logs ep"),
]


@pytest.fixture
def client(provider) -> RunpodEndpoints:
    return RunpodEndpoints(provider.api)


@pytest.mark.parametrize(("statuses", "cause", "advice"), CASES)
def test_each_worker_state_names_its_cause(client, runpod_double, statuses, cause, advice):
    endpoint = runpod_double.add_endpoint("ep", endpoint_id="ep")
    runpod_double.set_workers("ep", statuses)
    view = client.workers(endpoint["id"])
    assert view.count("total") == len(statuses)
    diagnosis = svc.diagnose_queue(view, endpoint_id="ep")
    assert diagnosis.cause == cause and advice in diagnosis.advice
    raw = client.api.call("GET", "/v2/serverless/ep/workers")
    assert svc.diagnose_queue(raw, endpoint_id="ep") == diagnosis
    cause_only, _ = diagnosis   # callers unpack (cause, advice)
    assert cause_only == cause


def test_max_workers_zero_comes_before_everything(client, runpod_double):
    runpod_double.add_endpoint("ep", endpoint_id="ep", workers_max=0)
    runpod_double.set_workers("ep", ["UNHEALTHY"])
    endpoint = client.get_endpoint("ep")
    diagnosis = svc.diagnose_queue(client.workers("ep"), workers_max=endpoint.workers_max, endpoint_id="ep")
    assert diagnosis.cause == svc.CAUSE_SCALED_TO_ZERO and "--workers-max" in diagnosis.advice
