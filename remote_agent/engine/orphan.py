"""The engine a dead daemon left behind, and the record that proves it is ours.

The engine leads its own process group (start_new_session), so a daemon that dies without stopping
it (SIGKILL, the OOM killer) leaves it running: it keeps the engine port and the GPU memory, and
the next daemon's start fails with port_in_use. So while an engine runs, a small JSON record in the
state dir names it by pid *and* start time (/proc/<pid>/stat field 22, clock ticks after boot: a
reused pid has another), and the next daemon stops what the record proves is ours before it starts
anything. It stops the orphan rather than adopting it: the orphan's output pipe went with the old
daemon, so nobody could read its log or tell why it crashed. A process the record does not prove
ours is never signalled. Linux only (/proc); elsewhere no record matches and nothing is stopped.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from remote_agent.procgroup import terminate_group

RECORD_FILE = "engine-process.json"
# What stop_orphan found: no record; a record of a process that is gone or is another one now
# (stale); an engine whose daemon still lives (not an orphan); an orphan, now stopped.
NO_RECORD, STALE, OWNED_BY_LIVE_DAEMON, STOPPED = "no_record", "stale", "owned_by_live_daemon", "stopped"
log = logging.getLogger("remote_agent.orphan")


@dataclass(frozen=True)
class ProcessStamp:
    """What /proc/<pid>/stat says about a live process: its parent pid, its process-group id, and its
    start time in clock ticks after boot (pid plus start_ticks name one process for the whole uptime)."""
    ppid: int
    pgid: int
    start_ticks: int


def read_stamp(pid: int) -> ProcessStamp | None:
    """pid's ProcessStamp, or None when it is gone, a zombie, or /proc cannot tell. Never raises."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # Field 2, the command name in parentheses, may itself hold ") ": split after the last one.
        fields = stat.rsplit(")", 1)[1].split()  # fields[0] is field 3 (state)
        if fields[0] in ("Z", "X"):
            return None
        return ProcessStamp(ppid=int(fields[1]), pgid=int(fields[2]), start_ticks=int(fields[19]))
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class EngineRecord:
    """One running engine as the daemon that spawned it wrote it down: pid and pgid (the engine
    leads its group, so they are equal), start_ticks (ProcessStamp's), the engine port, the adapter
    name, the model file it was given, and daemon_pid, the daemon that spawned it."""
    pid: int
    pgid: int
    start_ticks: int
    port: int
    engine: str
    model_path: str
    daemon_pid: int

    def __post_init__(self) -> None:
        # A damaged record must never aim a signal elsewhere (killpg(0) is our own group): the
        # engine always leads its own group, so pgid == pid > 1.
        numbers = (self.pid, self.pgid, self.start_ticks, self.port, self.daemon_pid)
        if not all(type(n) is int for n in numbers) or self.pid <= 1 or self.pgid != self.pid:
            raise ValueError(f"not an engine group leader's record: pid {self.pid!r}, pgid {self.pgid!r}")


class EngineRecordFile:
    """The record of the running engine: RECORD_FILE in the agent's state dir, written atomically
    (a temporary file, then os.replace). Reading and writing never raise: a record that cannot be
    kept only means a later daemon cannot recognise this engine."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / RECORD_FILE

    def note(self, pid: int, *, port: int, engine: str, model_path: str) -> None:
        """Record our child pid, just spawned, as the running engine (replacing any earlier record).
        A child that has exited already is not recorded: a later daemon has nothing to stop."""
        stamp = read_stamp(pid)
        if stamp is not None:
            self.write(EngineRecord(pid=pid, pgid=stamp.pgid, start_ticks=stamp.start_ticks, port=port,
                                    engine=engine, model_path=model_path, daemon_pid=os.getpid()))

    def write(self, record: EngineRecord) -> None:
        """Replace the record with this one."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".engine-process-", dir=self.state_dir)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(asdict(record), f)
                os.replace(tmp, self.path)
            except OSError:
                os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("cannot record the engine in %s (%s); a daemon that dies now leaves it running "
                        "unrecognised", self.path, exc.strerror)

    def read(self) -> EngineRecord | None:
        """The record, or None when there is none or it is unreadable (then it is removed)."""
        try:
            return EngineRecord(**json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("engine record %s is unreadable (%s); ignoring it", self.path, exc)
            self.clear()
            return None

    def clear(self) -> None:
        """Remove the record (no engine runs); nothing to remove is fine."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove the engine record %s (%s)", self.path, exc.strerror)


def stop_orphan(records: EngineRecordFile, grace_s: float) -> str:
    """At daemon start, before any engine is launched: stop the engine an earlier daemon of this
    state dir left running. It is ours only when the recorded pid is alive with the recorded start
    time and process group; it is an orphan only when its parent is no longer the daemon that
    spawned it (a child is re-parented the moment its parent dies). An orphan's group gets SIGTERM,
    grace_s seconds, then SIGKILL (procgroup.terminate_group; blocks up to grace_s + 5 s).

    Returns NO_RECORD, STALE (record removed, nothing signalled), OWNED_BY_LIVE_DAEMON (record and
    engine left alone) or STOPPED (record removed). Never raises.
    """
    record = records.read()
    if record is None:
        return NO_RECORD
    stamp = read_stamp(record.pid)
    if stamp is None or stamp.start_ticks != record.start_ticks or stamp.pgid != record.pgid:
        log.info("engine record names pid %d, which is gone or another process now; removing the record",
                 record.pid)
        records.clear()
        return STALE
    if stamp.ppid == record.daemon_pid:
        log.warning("the engine recorded in %s (pid %d) still belongs to a running daemon (pid %d); "
                    "leaving it alone", records.path, record.pid, record.daemon_pid)
        return OWNED_BY_LIVE_DAEMON
    log.warning("found %s (pid %d, port %d, %s) left running by a daemon that died; stopping it to free "
                "its port and memory", record.engine, record.pid, record.port, record.model_path)
    if not terminate_group(record.pgid, grace_s):
        log.warning("the orphaned %s (pid %d) ignored SIGTERM for %.0fs; it was killed with SIGKILL",
                    record.engine, record.pid, grace_s)
    records.clear()
    return STOPPED
