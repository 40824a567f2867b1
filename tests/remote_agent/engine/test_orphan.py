"""An engine left running by a daemon that died: the next daemon recognises it by its recorded pid
and start time, stops it and serves; a process the record does not prove ours is never touched."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from remote_agent.engine.orphan import (
    NO_RECORD, OWNED_BY_LIVE_DAEMON, RECORD_FILE, STALE, EngineRecord, EngineRecordFile, read_stamp, stop_orphan)
from remote_agent.procgroup import pid_alive

pytestmark = pytest.mark.timeout(90)


def port_listens(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout_s}s"
        time.sleep(0.05)


@pytest.fixture
def sleeper():
    """A `sleep` leading its own group, as an engine does; killed at the end if still there."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait(5)


def record_of(proc: subprocess.Popen, **changes) -> EngineRecord:
    stamp = read_stamp(proc.pid)
    fields = {"pid": proc.pid, "pgid": stamp.pgid, "start_ticks": stamp.start_ticks, "port": 1,
              "engine": "llama-server", "model_path": "/models/tiny-a.gguf",
              "daemon_pid": 1 << 22}  # above pid_max: no such daemon
    return EngineRecord(**{**fields, **changes})


def test_a_restarted_daemon_stops_the_engine_its_killed_predecessor_left_and_serves(make_daemon, llama_bin,
                                                                                    tiny_model):
    first = make_daemon(llama_bin, args=["--no-autostart"])
    _, reply = first.client().call("engine.start", {"model": str(tiny_model)})
    assert "result" in reply, reply
    orphan_pid = first.client().result("status")["pid"]
    orphan_start = read_stamp(orphan_pid).start_ticks
    record = json.loads((first.root / "state" / RECORD_FILE).read_text())
    assert (record["pid"], record["pgid"], record["port"]) == (orphan_pid, orphan_pid, first.port)

    first.proc.send_signal(signal.SIGKILL)  # the daemon only: the engine leads a group of its own
    first.proc.wait(10)
    try:
        assert pid_alive(orphan_pid) and port_listens(first.port), "the engine outlives its daemon"

        second = make_daemon(llama_bin, root=first.root, port=first.port)  # restores the saved config
        status = second.wait_for_state({"ready"}, timeout=60)
        assert status["pid"] != orphan_pid
        assert status["last_error"] is None
        assert not pid_alive(orphan_pid)
        assert "left running by a daemon that died; stopping it" in second.log_text()
        assert json.loads((first.root / "state" / RECORD_FILE).read_text())["pid"] == status["pid"]
    finally:  # the test's own engine, should the daemon have left it: pid and start time both match
        stamp = read_stamp(orphan_pid)
        if stamp is not None and stamp.start_ticks == orphan_start:
            os.killpg(orphan_pid, signal.SIGKILL)


def test_a_stale_record_is_removed_and_the_process_with_that_pid_is_left_alone(make_daemon, llama_bin, tmp_path,
                                                                               sleeper):
    root = tmp_path / "stale"
    records = EngineRecordFile(root / "state")
    stale = record_of(sleeper, start_ticks=read_stamp(sleeper.pid).start_ticks - 1)  # the pid reused since
    records.write(stale)

    daemon = make_daemon(llama_bin, root=root, args=["--no-autostart"])
    wait_until(lambda: not records.path.exists(), 10, "the daemon removes the stale record")
    assert daemon.client().result("status")["state"] == "stopped"
    time.sleep(0.2)
    assert sleeper.poll() is None and pid_alive(sleeper.pid)


def test_a_record_of_a_process_that_is_gone_is_removed(tmp_path, sleeper):
    records = EngineRecordFile(tmp_path)
    records.write(record_of(sleeper))
    sleeper.kill()
    sleeper.wait(5)
    assert stop_orphan(records, grace_s=1) == STALE
    assert not records.path.exists()
    assert stop_orphan(records, grace_s=1) == NO_RECORD


def test_an_engine_whose_daemon_still_runs_is_not_an_orphan(tmp_path, sleeper):
    records = EngineRecordFile(tmp_path)
    records.write(record_of(sleeper, daemon_pid=os.getpid()))  # its parent, this test, is alive
    assert stop_orphan(records, grace_s=1) == OWNED_BY_LIVE_DAEMON
    assert sleeper.poll() is None
    assert records.path.exists()


@pytest.mark.parametrize("content", ["{not json", "[]", json.dumps(
    {"pid": 2, "pgid": 0, "start_ticks": 0, "port": 1, "engine": "x", "model_path": "x", "daemon_pid": 0})])
def test_an_unreadable_or_damaged_record_is_ignored_and_removed(tmp_path, content):
    path = Path(tmp_path) / RECORD_FILE
    path.write_text(content)
    assert stop_orphan(EngineRecordFile(tmp_path), grace_s=1) == NO_RECORD
    assert not path.exists()
