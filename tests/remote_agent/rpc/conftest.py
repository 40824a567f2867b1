"""A real RPC cluster on loopback for a test module: two `remote-agent daemon`s in the backend role
(real ggml-rpc-server) and one in the server role (real llama-server --rpc over them), direct
connections on 127.0.0.1 (the SSH links are a later piece)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.testbed.agent_daemon import DaemonProcess
from tests.testbed.procs import free_port
from tests.testbed.rpc import FAST_SERVER_FLAGS, backend_env, server_env

# A backend's agent waits this long before restarting a crashed ggml-rpc-server, so the server's
# agent (which asks within about a second of llama-server's abort) still finds it down and names it.
BACKEND_RESTART_BACKOFF = "4"


@dataclass
class Cluster:
    backends: list[DaemonProcess]
    server: DaemonProcess

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{backend.env['APP_PORT']}" for backend in self.backends]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def status(self, daemon: DaemonProcess | None = None) -> dict:
        with (daemon or self.server).client() as client:
            return client.result("status")


def start_backend(root: Path, llama_bin: Path, **env: str) -> DaemonProcess:
    root.mkdir(parents=True, exist_ok=True)
    return DaemonProcess(root, llama_bin, env=backend_env(free_port(), **env),
                         args=["--restart-backoff", BACKEND_RESTART_BACKOFF]).start()


@pytest.fixture(scope="module")
def cluster(llama_bin, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    started: list[DaemonProcess] = []
    try:
        for name in ("backend-a", "backend-b"):
            started.append(start_backend(root / name, llama_bin))
        for backend in started:
            backend.wait_for_state({"ready"}, timeout=20)
        (root / "server").mkdir()
        server = DaemonProcess(root / "server", llama_bin,
                               env=server_env(tiny_model, [f"127.0.0.1:{b.env['APP_PORT']}" for b in started]),
                               args=FAST_SERVER_FLAGS).start()
        started.append(server)
        server.wait_for_state({"ready"}, timeout=60)
        yield Cluster(started[:2], server)
    finally:
        for daemon in started:
            daemon.stop()
