"""Stopping a process group: SIGTERM, grace, SIGKILL to the whole group, with real processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from remote_agent.procgroup import pid_alive, signal_group, terminate_async, terminate_group, terminate_popen

pytestmark = pytest.mark.timeout(30)

IGNORES_TERM = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)"]


def group_leader(*command: str) -> subprocess.Popen:
    proc = subprocess.Popen(list(command), start_new_session=True, stdout=subprocess.PIPE, text=True)
    if command[0] == sys.executable:
        assert proc.stdout.readline().strip() == "ready"  # its SIGTERM handler is in place
    return proc


def test_a_leader_that_obeys_sigterm_is_reaped_and_its_helpers_go_too(tmp_path):
    helper_pid = tmp_path / "helper.pid"
    proc = group_leader("sh", "-c", f"sleep 60 & echo $! > {helper_pid}; wait")
    deadline = time.monotonic() + 5
    while not helper_pid.exists() or not helper_pid.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    helper = int(helper_pid.read_text())
    assert terminate_popen(proc, grace_s=5) is True
    assert proc.returncode is not None
    time.sleep(0.1)
    assert not pid_alive(helper)


def test_a_leader_that_ignores_sigterm_is_killed_after_the_grace():
    proc = group_leader(*IGNORES_TERM)
    started = time.monotonic()
    assert terminate_popen(proc, grace_s=0.3) is False
    assert 0.3 <= time.monotonic() - started < 5
    assert proc.returncode == -9


def test_a_process_that_is_not_our_child_is_stopped_by_its_pid():
    proc = group_leader(*IGNORES_TERM)
    assert terminate_group(proc.pid, grace_s=0.3) is False
    assert not pid_alive(proc.pid)  # a zombie until we reap it: it counts as gone
    proc.wait(5)


def test_a_group_that_is_gone_is_no_error():
    proc = group_leader("true")
    proc.wait(5)
    assert terminate_popen(proc, grace_s=1) is True
    assert signal_group(proc.pid, 0) is False


async def test_the_async_variant_waits_on_the_exit_task():
    proc = await asyncio.create_subprocess_exec(*IGNORES_TERM, start_new_session=True,
                                                stdout=asyncio.subprocess.PIPE)
    assert (await proc.stdout.readline()).strip() == b"ready"
    exited = asyncio.ensure_future(proc.wait())
    assert await terminate_async(proc.pid, exited, grace_s=0.3) is False
    assert proc.returncode == -9
    assert await terminate_async(proc.pid, exited, grace_s=0.3) is True  # already gone
