"""RPC cluster parts for tests: daemons in the backend and server roles, and one double.

The backends and the server are real: `remote-agent daemon` processes with APP_MODE=backend running
the test bed's own ggml-rpc-server, and APP_MODE=server running its llama-server --rpc over them.
Everything binds 127.0.0.1.

FakeRpcServer is a DOUBLE, written for these tests: a Python socket server on 127.0.0.1 that
answers llama.cpp's RPC handshake (HELLO, command 14, as ggml-rpc.cpp at 0c1e57098 frames it) with
a protocol version of our choosing (3.0.0 by default: another llama.cpp generation) and serves
nothing else. It stands in for a backend pod running another llama.cpp build, which the test bed
does not have.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import urllib.request
from pathlib import Path

from tests.testbed.agent_daemon import DaemonProcess
from tests.testbed.procs import free_port

FAST_SERVER_FLAGS = ["--liveness-interval", "0.5", "--liveness-deadline", "3", "--liveness-idle-probe", "1",
                     "--backend-timeout", "1.5", "--backend-poll", "0.3", "--restart-backoff", "0.5"]


class FakeRpcServer:
    """A DOUBLE of a ggml-rpc-server of another build: it answers HELLO with `version` and closes.
    `hellos` counts the handshakes it answered. Use as a context manager."""

    def __init__(self, version: tuple[int, int, int] = (3, 0, 0)) -> None:
        self.version = version
        self.port = free_port()
        self.hellos = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(4)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def endpoint(self) -> str:
        """host:port as llama-server's --rpc takes it."""
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2.0)
                try:
                    head = _recv_exactly(conn, 9)
                    if head[0] == 14:
                        _recv_exactly(conn, struct.unpack("<Q", head[1:])[0])
                        conn.sendall(struct.pack("<Q", 28) + bytes([*self.version, 0]) + bytes(24))
                        self.hellos += 1
                        conn.recv(1)  # wait for the client to hang up
                except OSError:
                    pass

    def __enter__(self) -> "FakeRpcServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the client hung up mid-message")
        data += chunk
    return data


def backend_env(port: int, **extra: str) -> dict[str, str]:
    """The environment of a backend pod in seed 003's words."""
    return {"APP_MODE": "backend", "APP_PORT": str(port), **extra}


def server_env(model: Path, backends: list[str], **extra: str) -> dict[str, str]:
    """The environment of a server pod in seed 003's words (a small context for the tiny model)."""
    return {"APP_MODE": "server", "APP_MODEL": str(model), "APP_RPC_BACKENDS": ",".join(backends), "CTX": "1024",
            **extra}


def engine_pid(daemon: DaemonProcess) -> int:
    """The pid of the engine the daemon runs now (its status), which must be ready."""
    with daemon.client() as client:
        status = client.result("status")
    assert status["state"] == "ready", status
    return status["pid"]


def stream_tokens(base_url: str, api_key: str | None, max_tokens: int, timeout: float = 60.0):
    """POST a streamed /v1/completions and yield each chunk's text as it arrives; ends quietly when
    the server cuts the stream (an engine that aborted)."""
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": max_tokens, "stream": True, "temperature": 0,
                       "ignore_eos": True}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    request = urllib.request.Request(f"{base_url}/v1/completions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            for raw in reply:
                line = raw.decode().strip()
                if line.startswith("data: ") and line != "data: [DONE]":
                    yield json.loads(line[6:])["choices"][0]["text"]
    except (OSError, ValueError):
        return


def wait_until(predicate, timeout: float, what: str, step: float = 0.1):
    """Poll predicate() until it returns a truthy value (returned), or raise TimeoutError naming what."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(f"{what} did not happen within {timeout}s")
