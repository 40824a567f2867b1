"""The small rules behind the serverless verbs, on real values: /health counts → a state and the
queue diagnosis (shapes Runpod's /health may carry but the platform double never sends: throttled,
unhealthy), keep-alive's ping interval, serve's durations and loopback rule."""

from __future__ import annotations

import pytest

from podtui.commands.serve import parse_duration
from podtui.errors import UsageProblem
from podtui.providers.runpod_runtime import Health
from podtui.services.endpoint_runtime import classify
from podtui.services.keep_warm import ping_interval
from podtui.services.serve import check_loopback


@pytest.mark.parametrize(("workers", "jobs", "state", "cause"), [
    ({}, {}, "cold", None),                                                  # every key is optional (§3.4)
    ({"idle": 1}, {}, "warm", None),
    ({"ready": 1}, {"inQueue": 3}, "warm", None),                            # ready: third-party captures
    ({"running": 1, "unhealthy": 2}, {"inQueue": 1}, "warm", None),          # one serves: warm, queue moves
    ({"initializing": 1}, {"inQueue": 1}, "waking", "cold start"),
    ({"unhealthy": 1, "initializing": 1}, {"inQueue": 1}, "unhealthy", "crash-looping workers"),   # §5 #2
    ({"throttled": 2}, {"inQueue": 1}, "cold", "no GPU capacity"),
    ({}, {"inQueue": 1}, "cold", "no worker allocated yet"),
])
def test_health_counts_make_a_state_and_a_queue_diagnosis(workers, jobs, state, cause):
    found = classify(Health(jobs, workers), "ep9")
    assert found.state == state
    assert (found.diagnosis[0] if found.diagnosis else None) == cause
    if found.diagnosis:
        assert found.as_dict()["diagnosis"]["advice"]


@pytest.mark.parametrize(("idle", "every"), [(120, 90), (5, 3), (2, 1), (1, 1), (3600, 2700)])
def test_pings_come_a_margin_before_the_idle_timeout(idle, every):
    assert ping_interval(idle) == every


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("1.5h", 5400), ("0.2s", 0.2)])
def test_durations(text, seconds):
    assert parse_duration(text, "--idle-limit") == seconds


@pytest.mark.parametrize("text", ["", "10 minutes", "-5s", "1d", "m"])
def test_a_bad_duration_is_a_usage_error_with_the_forms(text):
    with pytest.raises(UsageProblem, match="not a duration") as bad:
        parse_duration(text, "--idle-limit")
    assert bad.value.exit_code == 2 and "10m" in bad.value.fix


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_loopback_binds_are_taken(host):
    assert check_loopback(host) == host.strip("[]")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "myhost.local", ""])
def test_any_other_bind_is_refused(host):
    with pytest.raises(UsageProblem, match="loopback only"):
        check_loopback(host)
