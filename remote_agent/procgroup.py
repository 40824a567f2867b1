"""Stop a process group: SIGTERM the group, wait grace_s for its leader, SIGKILL the group.

Everything the agent runs for long (the engine, sshd, the daemon) leads its own process group
(start_new_session=True), so whatever it forks goes down with it. The final SIGKILL always goes
to the whole group, also when the leader left in time: it takes helpers the leader left behind,
and a group that is already gone is no error. One signal-sending core for the three ways a
leader's exit is awaited: a Popen child (terminate_popen), an asyncio child (terminate_async), or
a process that is not our child, e.g. a daemon started by an earlier run (terminate_group).
Standard library only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

POLL_S = 0.05  # how often terminate_group looks whether a leader that is not our child has exited


def signal_group(pgid: int, sig: int) -> bool:
    """Send sig to every process in group pgid. False when the group is gone or not ours; never raises."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def pid_alive(pid: int) -> bool:
    """Whether pid is running; a zombie (exited, not yet reaped) counts as gone. Reads /proc where
    there is one, else asks os.kill(pid, 0)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def terminate_group(pgid: int, grace_s: float, *, exited: Callable[[float], bool] | None = None,
                    kill_wait_s: float = 5.0) -> bool:
    """SIGTERM process group pgid, wait up to grace_s (seconds) for its leader to exit, then SIGKILL
    the group and wait up to kill_wait_s for the leader.

    pgid is the leader's pid (started with start_new_session=True, or it called setsid).
    exited(timeout_s) waits up to timeout_s and says whether the leader has exited; the default polls
    pid_alive(pgid) every POLL_S, for a leader that is not our child (use terminate_popen for one
    that is: it also reaps it). Returns True when the leader was gone within grace_s (SIGTERM was
    enough, or nothing was running), False when it had to be killed. Blocks up to
    grace_s + kill_wait_s; raises nothing for a group that is already gone.
    """
    wait = exited or (lambda timeout_s: _poll_until_gone(pgid, timeout_s))
    calm = wait(0)
    if not calm:
        signal_group(pgid, signal.SIGTERM)
        calm = wait(grace_s)
    signal_group(pgid, signal.SIGKILL)
    if not calm:
        wait(kill_wait_s)
    return calm


def terminate_popen(proc: subprocess.Popen, grace_s: float, *, kill_wait_s: float = 5.0) -> bool:
    """terminate_group for a Popen child that leads its own group; waiting on proc reaps it.
    Returns True when SIGTERM was enough (or proc had exited already), False when it was killed."""

    def exited(timeout_s: float) -> bool:
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    return terminate_group(proc.pid, grace_s, exited=exited, kill_wait_s=kill_wait_s)


async def terminate_async(pgid: int, exited: asyncio.Future, grace_s: float, *,
                          kill_wait_s: float | None = None) -> bool:
    """terminate_group for an asyncio child: `exited` completes when the leader has exited (e.g. a
    task running proc.wait()); it is shielded, never cancelled. kill_wait_s None waits for the
    leader as long as it takes after SIGKILL. Returns True when SIGTERM was enough (or it had
    exited already), False when it was killed."""
    calm = exited.done()
    if not calm:
        signal_group(pgid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), grace_s)
            calm = True
        except asyncio.TimeoutError:
            pass
    signal_group(pgid, signal.SIGKILL)
    if kill_wait_s is None:
        await asyncio.shield(exited)
    else:
        try:
            await asyncio.wait_for(asyncio.shield(exited), kill_wait_s)
        except asyncio.TimeoutError:
            pass
    return calm


def _poll_until_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True
