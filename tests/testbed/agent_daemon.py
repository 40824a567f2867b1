"""Drive a real `remote-agent daemon` subprocess over its real Unix socket."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.testbed.procs import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).with_name("standin_engine.py")


class AgentClient:
    """A blocking JSON-lines client; `call` returns (events, final message)."""

    def __init__(self, socket_path: Path, timeout: float = 60.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(socket_path))
        self.file = self.sock.makefile("rb")
        self._ids = itertools.count(1)
        self.hello = self.read()

    def read(self) -> dict:
        line = self.file.readline()
        if not line:
            raise ConnectionError("daemon closed the connection")
        return json.loads(line)

    def send(self, message: dict) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def call(self, method: str, params: dict | None = None, request_id=None) -> tuple[list[dict], dict]:
        request_id = next(self._ids) if request_id is None else request_id
        self.send({"id": request_id, "method": method, "params": params or {}})
        events = []
        while True:
            message = self.read()
            if message.get("id") != request_id:
                continue
            if "event" in message:
                events.append(message)
            else:
                return events, message

    def result(self, method: str, params: dict | None = None):
        events, reply = self.call(method, params)
        assert "result" in reply, reply
        return reply["result"]

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> "AgentClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class DaemonProcess:
    root: Path
    bin_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return self.root / "run" / "agent.sock"

    def start(self, timeout: float = 20.0) -> "DaemonProcess":
        env = {**os.environ, "PORT": str(self.port), **self.env}
        for name in ("MODEL", "CTX", "ARGS", "ENGINE", "API_KEY", "LLAMA_API_KEY"):
            if name not in self.env:
                env.pop(name, None)
        self.log = open(self.root / "daemon.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "remote_agent", "daemon", "--socket", str(self.socket),
             "--state-dir", str(self.root / "state"), "--models-dir", str(self.root / "models"),
             "--engine-bin-dir", str(self.bin_dir), "--stop-grace", "3", "--health-timeout", "30", *self.args],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.log_text()}")
            try:
                AgentClient(self.socket, timeout=5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("daemon socket did not answer")

    def client(self) -> AgentClient:
        return AgentClient(self.socket)

    def wait_for_state(self, states: set[str], timeout: float = 30.0, pred=lambda s: True) -> dict:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                status = client.result("status")
                if status["state"] in states and pred(status):
                    return status
                if time.monotonic() > deadline:
                    raise TimeoutError(f"state {status['state']} never became one of {states}: {status}")
                time.sleep(0.05)

    def api_key(self) -> str | None:
        """The key its engine requires, asked the way podtui asks (`engine.api_key`)."""
        with self.client() as client:
            return client.result("engine.api_key")["api_key"]

    def log_text(self) -> str:
        return (self.root / "daemon.log").read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=15)
            self.proc = None


def standin_bin_dir(directory: Path, names=("llama-server", "koboldcpp")) -> Path:
    """A folder whose engine binaries are the stand-in engine (see standin_engine.py)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text(f"#!/bin/sh\nexec {sys.executable} {STANDIN} \"$@\"\n")
        path.chmod(0o755)
    return directory


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")
