"""The agent's channel on this machine: `remote-agent rpc` as a local subprocess, no SSH.

`LocalBridge` has the one method of podtui.ssh.connection.SshConnection that AgentClient uses,
`open_exec`, and hands back a `LocalChannel` over the subprocess's stdin/stdout, so the client
speaks to the local pod's daemon exactly as it does to a pod's over SSH.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

AGENT = [sys.executable, "-m", "remote_agent"]  # podtui and remote_agent ship in one package


@dataclass(frozen=True)
class _LocalLabel:
    label: str = "the local pod"


class LocalChannel:
    """podtui.agent.client.Channel over a local `remote-agent rpc` process; stderr is kept (last
    8 KiB) so the bridge's own words reach the error a failed open raises."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self._stderr = bytearray()
        self._stderr_lock = threading.Lock()
        threading.Thread(target=self._collect_stderr, daemon=True, name="podtui-local-bridge-err").start()

    def _collect_stderr(self) -> None:
        for chunk in iter(lambda: self.proc.stderr.read1(4096), b""):
            with self._stderr_lock:
                self._stderr += chunk
                del self._stderr[:-8192]

    def makefile(self, mode: str = "rb"):
        """The process's stdout (a binary reader; mode is ignored)."""
        return self.proc.stdout

    def sendall(self, data: bytes) -> None:
        """Write data to the process's stdin and flush; raises OSError when the process has exited."""
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise OSError(f"the local bridge exited: {exc}") from None

    def recv_stderr_ready(self) -> bool:
        """Whether kept stderr bytes are waiting; waits 0.05 s first when the process has exited."""
        time.sleep(0.05) if self.proc.poll() is not None else None  # let the reader catch the last words
        with self._stderr_lock:
            return bool(self._stderr)

    def recv_stderr(self, n: int) -> bytes:
        """Up to n kept stderr bytes, removed from the buffer (b"" when none)."""
        with self._stderr_lock:
            data = bytes(self._stderr[:n])
            del self._stderr[:n]
            return data

    def close(self) -> None:
        """Close stdin and wait up to 3 seconds for the process to exit, then kill it."""
        try:
            self.proc.stdin.close()  # the bridge half-closes the socket; the daemon hangs up
        except OSError:
            pass
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(3)


class LocalBridge:
    """podtui.agent.client.ChannelOpener: `open_exec` starts `remote-agent rpc --socket S` here,
    not over SSH (the command argument is ignored)."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.target = _LocalLabel()

    def open_exec(self, command: str = "", timeout: float = 10.0) -> LocalChannel:
        """A LocalChannel over a new `python -m remote_agent rpc --socket S` process (command and
        timeout are ignored). Raises OSError when the process cannot be started."""
        proc = subprocess.Popen([*AGENT, "rpc", "--socket", str(self.socket_path)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        return LocalChannel(proc)

    def close(self) -> None:
        """Nothing to close: each channel owns its process."""
        pass
