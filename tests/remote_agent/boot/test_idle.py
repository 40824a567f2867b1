"""Idle auto-stop against the team's loopback double of Runpod REST v2 (short limits).

A real llama-server's requests and a real SSH session keep the pod alive; idleness past the limit
sends exactly one `POST /v2/pods/{id}/action {"action": "stop"}` with the pod's API key. The
double (tests/testbed/runpod_double.py) validates that body against the spec's own
`PodActionRequest` schema, read from the team's copy of openapi-v2.json at test time.
"""

from __future__ import annotations

import threading
import time

import paramiko
import pytest

from remote_agent.idle import DownloadProbe, EngineProbe, IdleWatcher, SshSessionProbe, stop_pod
from tests.remote_agent.boot.conftest import SECRETS
from tests.testbed.llama import LlamaServer, chat_completion
from tests.testbed.runpod_double import SPEC_PATH, RunpodDouble

POD = "podidle42"
KEY = SECRETS["RUNPOD_API_KEY"]


@pytest.fixture
def runpod():
    if not SPEC_PATH.exists():
        pytest.skip(f"the Runpod REST v2 spec is not at {SPEC_PATH} (set RUNPOD_OPENAPI_SPEC)")
    double = RunpodDouble(KEY).start()
    double.add_pod(name="idle", status="RUNNING", pod_id=POD)
    yield double
    double.stop()
    assert double.request_violations == [] and double.response_violations == []


def action_calls(runpod) -> list[dict]:
    """Every `POST /v2/pods/{id}/action`, accepted or refused (a 401 is refused before routing)."""
    return runpod.requests_to("POST", "/v2/pods/")


def watcher_for(runpod, probes, logs, **kwargs) -> IdleWatcher:
    return IdleWatcher(kwargs.pop("limit_s", 1.5), probes,
                       stop=lambda: stop_pod(runpod.url, POD, KEY, timeout=5),
                       log=logs.append, **kwargs)


def run_in_background(watcher: IdleWatcher) -> threading.Event:
    done = threading.Event()
    threading.Thread(target=watcher.run, args=(done,), daemon=True).start()
    return done


def test_warns_ahead_resets_on_activity_then_stops_exactly_once(runpod, tmp_path):
    now = [0.0]
    models = tmp_path / "models"
    models.mkdir()
    logs: list[str] = []
    watcher = watcher_for(runpod, [DownloadProbe(models)], logs, limit_s=600, warn_ahead_s=300,
                          clock=lambda: now[0])

    def at(t: float) -> None:
        now[0] = t
        watcher.tick()

    at(200)
    assert logs == []
    at(301)
    at(350)
    assert len(logs) == 1 and "WARNING" in logs[0] and "stops itself in 5.0 min" in logs[0]
    (models / "part.incomplete").write_bytes(b"x" * 1000)  # a download makes progress
    at(400)
    assert "idle clock reset" in logs[-1] and action_calls(runpod) == []
    at(650)
    assert len(logs) == 2  # 250 s idle since the download: no warning yet
    at(701)
    assert "WARNING" in logs[-1]
    at(1000)
    at(1100)
    at(5000)
    assert runpod.stops() == [POD]
    (call,) = action_calls(runpod)
    assert call["path"] == f"/v2/pods/{POD}/action" and call["body"] == {"action": "stop"}
    assert call["authorized"]  # sent with `Bearer <the pod's key>`
    assert "asked Runpod to stop this pod" in logs[-1]
    assert all(KEY not in line for line in logs)


def test_a_refused_stop_is_logged_and_retried_without_showing_the_key(runpod):
    now = [0.0]
    logs: list[str] = []
    runpod.api_key = "another-key"  # Runpod refuses ours
    watcher = watcher_for(runpod, [], logs, limit_s=60, retry_s=30, clock=lambda: now[0])
    for t in (61, 70, 92):
        now[0] = t
        watcher.tick()
    assert len(action_calls(runpod)) == 2  # at 61 and again after retry_s, not on every tick
    assert runpod.stops() == [] and not any(c["authorized"] for c in action_calls(runpod))
    assert "HTTP 401" in logs[-1] and not watcher.stopped
    runpod.api_key = KEY
    for t in (130, 200, 300):
        now[0] = t
        watcher.tick()
    calls = action_calls(runpod)
    assert len(calls) == 3 and all(c["body"] == {"action": "stop"} for c in calls) and watcher.stopped
    assert runpod.stops() == [POD]  # the third, with the right key, was accepted
    assert all(KEY not in line for line in logs)


@pytest.mark.timeout(90)
def test_requests_in_flight_keep_the_pod_running(runpod, llama_server):
    logs: list[str] = []
    watcher = watcher_for(runpod, [EngineProbe(llama_server.port)], logs, limit_s=1.5,
                          warn_ahead_s=0.5, poll_s=0.1)
    busy_until = time.monotonic() + 4.0  # well past the 1.5 s limit
    done = run_in_background(watcher)
    try:
        while time.monotonic() < busy_until:  # long generations, back to back
            chat_completion(llama_server.base_url, "Tell me a long story", max_tokens=1200)
        assert action_calls(runpod) == [], logs
        ended = time.monotonic()
        deadline = ended + 10
        while not action_calls(runpod) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runpod.stops() == [POD]
        assert time.monotonic() - ended >= 1.4  # only after a full idle limit
        time.sleep(0.5)
        assert len(action_calls(runpod)) == 1
    finally:
        done.set()


@pytest.mark.timeout(60)
def test_an_open_ssh_session_keeps_the_pod_running(runpod, sshd, client_key, tmp_path):
    logs: list[str] = []
    watcher = watcher_for(runpod, [SshSessionProbe(sshd.port)], logs, limit_s=1.0,
                          warn_ahead_s=0.5, poll_s=0.1)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line())
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port=sshd.port, username="root", key_filename=str(client_key),
                   look_for_keys=False, allow_agent=False, timeout=10)
    done = run_in_background(watcher)
    try:
        time.sleep(2.5)  # the session stays open past the limit
        assert action_calls(runpod) == [], logs
        client.close()
        closed = time.monotonic()
        while not action_calls(runpod) and time.monotonic() < closed + 10:
            time.sleep(0.05)
        assert runpod.stops() == [POD]
    finally:
        client.close()
        done.set()


def test_unreachable_engine_is_not_activity(tmp_path):
    from tests.testbed.procs import free_port

    probe = EngineProbe(free_port())
    assert probe.active() is False and probe.active() is False


@pytest.mark.timeout(90)
def test_boot_stops_an_idle_pod_once(make_boot, runpod):
    sleeper = "python3 -c 'import time; time.sleep(600)'"  # the daemon is not under test here
    run = make_boot("--exit-on-error", "--daemon-command", sleeper, "--idle-unit-seconds", "0.5",
                    env={"IDLE_STOP_MINUTES": "2", "RUNPOD_API_URL": runpod.url,
                         "RUNPOD_POD_ID": POD}).start()
    out = run.wait_for("asked Runpod to stop this pod", timeout=30)
    assert "idle auto-stop is on" in out and "[idle] WARNING" in out
    time.sleep(1.5)
    assert runpod.stops() == [POD] and [c["authorized"] for c in action_calls(runpod)] == [True]
    assert KEY not in run.output()
    assert run.terminate() == 0


@pytest.mark.timeout(60)
def test_the_engine_probe_sees_requests_on_a_keyed_engine_only_with_its_key(llama_bin, tiny_model, tmp_path):
    # Boot's watcher and the daemon's activity clock probe an engine that requires the agent's key:
    # without it /metrics and /slots answer 401, and a pod in use would look idle and be stopped.
    server = LlamaServer(llama_bin, tiny_model, extra_args=("--api-key", "probe-key"),
                         log_path=tmp_path / "llama.log").start()
    try:
        with_key, without = EngineProbe(server.port, api_key=lambda: "probe-key"), EngineProbe(server.port)
        assert not with_key.active() and not without.active()   # baselines
        chat_completion(server.base_url, max_tokens=2, api_key="probe-key")
        assert with_key.active() and not without.active()
    finally:
        server.stop()
