"""The link's session on a backend: the command its authorized_keys line forces (authorized.py).

    python -m remote_agent.links.session --record STATE_DIR/engine-process.json

It does two things. It waits for stdin to close, as `cat >/dev/null` did. The session must exist:
that is what makes OpenSSH set TCP_NODELAY (RPC.md fact 19). It ends when the server's agent closes
the link's stdin, or when the connection drops. Meanwhile it prints one line each time this
backend's ggml-rpc-server is a new process:

    podtui-rpc-server PID START_TICKS

The first line describes the process running when the link came up. The backend's agent writes
the record each time it starts ggml-rpc-server (engine/orphan.py's EngineRecordFile: pid, and
start_ticks from /proc/PID/stat). The server pod's link (supervisor.py) reads these lines. A
ggml-rpc-server that died and came back within a second is then named, even though the pre-start
handshake finds it answering again.

It reads nothing but that record (pid and start time, no secret). It polls the file's metadata
every POLL_S seconds and reads it only when that changes. It uses the standard library only, so it
loads in tens of milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

POLL_S = 0.2
PREFIX = "podtui-rpc-server"


def read_key(record: Path) -> tuple[int, int] | None:
    """(pid, start_ticks) of the engine the record names, or None (no record, or one being replaced)."""
    try:
        data = json.loads(record.read_text())
        return int(data["pid"]), int(data["start_ticks"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def parse_line(line: str) -> tuple[int, int] | None:
    """The (pid, start_ticks) of one `podtui-rpc-server PID START_TICKS` line; None for any other line."""
    parts = line.split()
    if len(parts) == 3 and parts[0] == PREFIX and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    return None


def watch(record: Path, stdin, stdout, poll_s: float = POLL_S) -> int:
    """Print a line for each new engine the record names, until stdin reaches EOF (then return 0)."""
    closed = threading.Event()

    def drain() -> None:
        try:
            while stdin.read(65536):
                pass
        except (OSError, ValueError):
            pass
        closed.set()

    threading.Thread(target=drain, daemon=True).start()
    last_stat, last_key = None, None
    while not closed.is_set():
        try:
            st = os.stat(record)
            stat = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            stat = None
        if stat is not None and stat != last_stat:
            key = read_key(record)
            if key is not None and key != last_key:
                try:
                    stdout.write(f"{PREFIX} {key[0]} {key[1]}\n")
                    stdout.flush()
                except (OSError, ValueError):  # the link is gone
                    return 0
                last_key = key
        last_stat = stat
        closed.wait(poll_s)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remote_agent.links.session", description=__doc__.splitlines()[0])
    parser.add_argument("--record", required=True, type=Path, help="the backend agent's engine-process.json")
    args = parser.parse_args(argv)
    return watch(args.record, sys.stdin.buffer, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
