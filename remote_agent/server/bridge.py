"""`remote-agent rpc`: stdin/stdout ⇄ the daemon's Unix socket, byte for byte.

This is what podtui runs over an SSH exec channel (paramiko cannot open a remote Unix socket). It
exits when the daemon closes the socket; when stdin ends it half-closes the socket so the daemon
still answers what was already sent, then exits when the daemon hangs up.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path

from remote_agent.paths import UnsafeSocketPlace, check_socket_place

CHUNK = 64 * 1024


def run_bridge(socket_path: Path, stdin_fd: int | None = None, stdout_fd: int | None = None) -> int:
    """`remote-agent rpc`: stdin to the daemon's socket, its answers to stdout, until either side
    closes. Returns the exit status: 0, or 1 after one line on stderr (no daemon, the socket's place
    is unsafe or another user's, the connection broke)."""
    stdin_fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    stdout_fd = sys.stdout.fileno() if stdout_fd is None else stdout_fd
    try:
        check_socket_place(Path(socket_path), socket_too=True)
    except UnsafeSocketPlace as exc:
        return _fail(f"refusing to connect: {exc}")
    except OSError:
        pass  # a missing folder: connect() below says the daemon is not running
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(socket_path))
    except FileNotFoundError:
        return _fail(f"the agent daemon is not running: no socket at {socket_path}. Start it with "
                     "`remote-agent daemon` (the image's boot does this) or pass --socket")
    except ConnectionRefusedError:
        return _fail(f"the agent daemon is not running: {socket_path} refuses connections (a stale socket). "
                     "Start it with `remote-agent daemon`")
    except PermissionError:
        return _fail(f"permission denied on {socket_path}: the socket belongs to another user; connect as "
                     "the user that runs the daemon")
    except OSError as exc:
        return _fail(f"cannot connect to {socket_path}: {exc.strerror or exc}")

    def stdin_to_socket() -> None:
        try:
            while True:
                data = os.read(stdin_fd, CHUNK)
                if not data:
                    break
                sock.sendall(data)
        except OSError:
            pass
        try:
            sock.shutdown(socket.SHUT_WR)  # the daemon sees EOF, answers what it has, then closes
        except OSError:
            pass

    threading.Thread(target=stdin_to_socket, name="stdin-to-socket", daemon=True).start()
    try:
        while True:
            data = sock.recv(CHUNK)
            if not data:
                break
            view = memoryview(data)
            while view:
                written = os.write(stdout_fd, view)
                view = view[written:]
    except BrokenPipeError:
        pass  # our reader went away: nothing left to do
    except OSError as exc:
        return _fail(f"connection to the agent daemon broke: {exc.strerror or exc}")
    finally:
        sock.close()
    return 0


def _fail(message: str) -> int:
    print(f"remote-agent rpc: {message}", file=sys.stderr)
    return 1
