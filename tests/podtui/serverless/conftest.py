"""Fixtures of the serverless runtime tests: the platform DOUBLE (tests/testbed/runpod_platform.py)
with the REAL runpod SDK worker (tests/testbed/sdk_worker.py) in front of the REAL llama-server,
and `podtui` processes pointed at it.

Every SDK worker runs with RUNPOD_SKIP_AUTO_SYSTEM_CHECKS / RUNPOD_SKIP_GPU_CHECK and a temporary
HOME (sdk_worker does it); every podtui gets a temporary HOME and config, the double's runtime URL,
and a REST URL on loopback (a closed port unless a test gives the REST double), so no byte leaves
127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

import pytest

from tests.testbed.cli import PODTUI
from tests.testbed.procs import free_port, stop_process
from tests.testbed.runpod_platform import PlatformDouble
from tests.testbed.runpod_provider import API_KEY
from tests.testbed.sdk_worker import sdk_worker_factory, warm_endpoint

ENDPOINT = "ep1"


def closed_port_url() -> str:
    """A loopback URL nothing listens on: REST v2 look-ups fail at once, and never leave the machine."""
    return f"http://127.0.0.1:{free_port()}"


def serverless_env(tmp_path, platform: PlatformDouble, rest_url: str | None = None) -> dict:
    """The real `podtui` entry point's environment for the double: config, state and HOME in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "PODTUI_"))}
    env.update({"PODTUI_CONFIG_DIR": str(tmp_path / "podtui-config"), "PODTUI_STATE_DIR": str(tmp_path / "podtui-state"),
                "HOME": str(tmp_path / "home"), "RUNPOD_API_KEY": API_KEY,
                "PODTUI_RUNPOD_RUNTIME_URL": f"{platform.base_url}/v2",
                "PODTUI_RUNPOD_API_URL": rest_url or closed_port_url(),
                "PODTUI_RUNPOD_BACKOFF_S": "0.01", "SSH_AUTH_SOCK": ""})
    return env


@pytest.fixture(scope="module")
def warm_platform(llama_server, tmp_path_factory):
    """An endpoint with one real SDK worker already taking jobs (warm), in front of llama-server."""
    with warm_endpoint(ENDPOINT, API_KEY, llama_server.port, tmp_path_factory.mktemp("warm-worker")) as platform:
        yield platform


@pytest.fixture
def cold_platform(llama_server, tmp_path):
    """An endpoint with no worker: the first job starts a real SDK worker after a 2 s cold start."""
    factory = sdk_worker_factory(llama_server.port, log_dir=tmp_path / "workers")
    with PlatformDouble(ENDPOINT, API_KEY, worker_factory=factory, cold_start_s=2.0, idle_timeout_s=30) as platform:
        yield platform


@dataclass
class ServeProcess:
    """A running `podtui serve … --json`: its "serving" object, and its stderr JSON lines."""

    proc: subprocess.Popen
    info: dict
    stderr_lines: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.info["base_url"]

    @property
    def api_key(self) -> str:
        return self.info["api_key"]

    def events(self, kind: str | None = None) -> list[dict]:
        found = []
        for line in list(self.stderr_lines):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if kind is None or event.get("event") == kind:
                found.append(event)
        return found

    def wait_event(self, kind: str, predicate=lambda e: True, timeout_s: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.events(kind):
                if predicate(event):
                    return event
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {kind} event within {timeout_s}s; stderr:\n{''.join(self.stderr_lines)}")

    def interrupt(self, timeout_s: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout_s)

    def output(self) -> str:
        return json.dumps(self.info) + "".join(self.stderr_lines)


def start_serve(env: dict, *args: str) -> ServeProcess:
    """Start `podtui serve ep1 -p 0 --json ARGS…`; return once it printed its "serving" object."""
    proc = subprocess.Popen([PODTUI, "serve", ENDPOINT, "-p", "0", "--json", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    served = ServeProcess(proc, {})

    def drain() -> None:
        for line in proc.stderr:
            served.stderr_lines.append(line)

    threading.Thread(target=drain, daemon=True).start()
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise AssertionError(f"serve exited {proc.returncode} before serving: {''.join(served.stderr_lines)}")
    served.info = json.loads(line)
    return served


@pytest.fixture
def serves():
    """Stops every `podtui serve` a test started, by its own PID."""
    started: list[ServeProcess] = []
    yield started
    for served in started:
        stop_process(served.proc)
