"""`podtui endpoints logs` against the double's worker-log SSE: a dropped connection resumes with
Last-Event-ID (no line lost or repeated), --follow picks up new lines and new workers."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time

from tests.testbed.cli import PODTUI, run_podtui
from tests.testbed.procs import stop_process
from tests.testbed.runpod_provider import API_KEY


def test_a_dropped_log_stream_resumes_after_the_last_line_seen(runpod_env, runpod_double):
    endpoint = runpod_double.add_endpoint("chat")
    runpod_double.set_workers(endpoint["id"], ["RUNNING", "IDLE"])
    runpod_double.append_worker_log(endpoint["id"], "w1", "\n".join(f"w1 line {i}" for i in range(10)))
    runpod_double.append_worker_log(endpoint["id"], "w2", "w2 ready", source="system")
    runpod_double.drop_log_after(4)   # the first stream breaks mid-chunk after 4 events
    env = {**runpod_env, "PODTUI_RUNPOD_LOG_QUIET_S": "1.0"}   # a backfill is over after 1 s of quiet
    out = run_podtui(env, "endpoints", "logs", "chat", "--json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(e["worker"], e["line"]) for e in lines] == [("w1", f"w1 line {i}") for i in range(10)] + [("w2", "w2 ready")]
    log_requests = runpod_double.requests_to("GET", f"/v2/serverless/{endpoint['id']}/workers/w1/logs")
    assert len(log_requests) == 2
    assert log_requests[1]["last_event_id"] == lines[3]["ts"]   # resumed after the 4th line
    assert "tail" not in log_requests[1]["query"]                # the cursor drives the backfill
    notes = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert any("resuming after" in n["detail"] for n in notes)
    only = run_podtui(env, "endpoints", "logs", endpoint["id"], "--worker", "w1", "--tail", "2",
                      "--source", "container")
    assert only.returncode == 0
    assert [line.rsplit("  ", 1)[1] for line in only.stdout.splitlines()] == ["w1 line 8", "w1 line 9"]
    gone = run_podtui(runpod_env, "endpoints", "logs", "chat", "--worker", "w7")
    assert gone.returncode == 1 and "podtui endpoints list" in gone.stderr
    assert API_KEY not in out.stdout + out.stderr + gone.stderr


def test_an_endpoint_without_workers_says_so(runpod_env, runpod_double):
    runpod_double.add_endpoint("idle")
    out = run_podtui(runpod_env, "endpoints", "logs", "idle")
    assert out.returncode == 0 and out.stdout == "" and "no active worker" in out.stderr


def test_follow_shows_new_lines_and_new_workers_and_survives_a_drop(runpod_env, runpod_double):
    endpoint = runpod_double.add_endpoint("chat")
    runpod_double.set_workers(endpoint["id"], ["RUNNING"])
    runpod_double.append_worker_log(endpoint["id"], "w1", "one\ntwo\nthree")
    runpod_double.drop_log_after(1)
    env = {**runpod_env, "PODTUI_POLL_S": "0.3"}
    proc = subprocess.Popen([PODTUI, "endpoints", "logs", "chat", "--follow", "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    got: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=lambda: [got.put(json.loads(line)) for line in proc.stdout], daemon=True).start()

    def next_lines(count: int) -> list[tuple[str, str]]:
        return [(e["worker"], e["line"]) for e in (got.get(timeout=10) for _ in range(count))]

    try:
        assert next_lines(3) == [("w1", "one"), ("w1", "two"), ("w1", "three")]
        runpod_double.append_worker_log(endpoint["id"], "w1", "four")
        assert next_lines(1) == [("w1", "four")]
        runpod_double.set_workers(endpoint["id"], ["RUNNING", ("w2", "INITIALIZING")])
        runpod_double.append_worker_log(endpoint["id"], "w2", "booting")
        assert next_lines(1) == [("w2", "booting")]
        time.sleep(0.3)
        assert got.empty()   # nothing repeated
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        stop_process(proc)
    assert "resuming after" in proc.stderr.read()
