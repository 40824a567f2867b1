"""The real `podtui` entry point as a subprocess, for every CLI test: one runner, one tunnel
starter, and the loopback parts the tunnel tests count with."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

PODTUI = str(Path(sys.executable).parent / "podtui")


def run_podtui(env: dict, *args: str, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`podtui ARGS…` to completion (text stdout/stderr), killed after `timeout` seconds."""
    return subprocess.run([PODTUI, *args], env=env, input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


@dataclass
class RunningTunnel:
    proc: subprocess.Popen
    info: dict
    stderr_lines: list[str] = field(default_factory=list)

    @property
    def local_url(self) -> str:
        return self.info["base_url"].removesuffix("/v1")

    @property
    def local_port(self) -> int:
        return int(self.info["forwards"][0]["local"].rsplit(":", 1)[1])

    def stderr_text(self) -> str:
        return "".join(self.stderr_lines)

    def interrupt(self, timeout: float = 10) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)


def start_tunnel(env: dict, target: str, *args: str) -> RunningTunnel:
    """Start `podtui tunnel … --json`; return once it printed its "up" object (or raise)."""
    proc = subprocess.Popen([PODTUI, "tunnel", target, "--json", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    tunnel = RunningTunnel(proc, {})

    def drain() -> None:
        for line in proc.stderr:
            tunnel.stderr_lines.append(line)

    threading.Thread(target=drain, daemon=True).start()
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise AssertionError(f"tunnel exited {proc.returncode} before up: {tunnel.stderr_text()}")
    tunnel.info = json.loads(line)
    return tunnel


class CountingUpstream:
    """A TCP server on loopback that counts connections and answers a tiny HTTP response."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self.sock.close()


def sshd_session_children(listener_pid: int) -> list[int]:
    """PIDs of the per-connection sshd processes forked by the `sshd -D` listener."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == listener_pid:
            children.append(int(entry.name))
    return children
