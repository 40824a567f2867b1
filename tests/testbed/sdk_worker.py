"""Run the REAL runpod SDK worker loop (unmodified) — this repo's serverless worker — against the double.

    with PlatformDouble() as platform:
        worker = start_sdk_worker(platform.worker_env(), engine_port=server.port, api_key=key,
                                  concurrency=4, log_path=tmp_path / "worker.log")
        ...
        worker.stop()

or let the double start workers itself, on demand and after a cold start:

    PlatformDouble(worker_factory=sdk_worker_factory(server.port, api_key=key), cold_start_s=2.0)

`start_sdk_worker` runs `python -m remote_agent serverless-worker --engine-url
http://127.0.0.1:<engine_port> --engine <engine>` as its own process group, with the double's
RUNPOD_* variables (the fitness checks skipped: they connect to 8.8.8.8), a fresh temporary HOME
(`~/.runpod/config.toml` would override the worker's key, SERVERLESS.md §1.6) and working directory
(the SDK runs `./test_input.json` when it finds one), MAX_CONCURRENCY, and the engine's key in
API_KEY (never on the command line). The worker imports runpod in about 1.7 s; `wait_ready()` waits
for its first job-take. `stop()` sends SIGTERM, as Runpod does: the SDK finishes the jobs in flight
and exits 0 (§1.9); after `grace_s` the group is killed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.testbed.procs import stop_process

REPO = Path(__file__).resolve().parents[2]
# Kept from the test's own environment: what Python needs to run; nothing that could steer the SDK.
PASS_THROUGH = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "TMPDIR", "VIRTUAL_ENV")


@dataclass
class SdkWorker:
    """One worker process: its Popen, log file and temporary HOME (removed by stop())."""
    proc: subprocess.Popen
    log_path: Path
    home: Path
    worker_id: str
    grace_s: float = 10.0
    exit_code: int | None = field(default=None)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, platform, timeout_s: float = 30.0) -> "SdkWorker":
        """Wait until the double has seen this worker take (or ask for) a job; RuntimeError with the
        worker's output when it exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(w["id"] == self.worker_id and w["state"] == "ready" for w in platform.workers):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise TimeoutError(f"the worker took no job within {timeout_s}s:\n{self.output()}")

    def stop(self) -> int | None:
        """SIGTERM (the SDK drains), SIGKILL after grace_s; returns the exit code."""
        if self.proc.poll() is None:
            stop_process(self.proc, grace=self.grace_s)
        self.exit_code = self.proc.returncode
        shutil.rmtree(self.home, ignore_errors=True)
        return self.exit_code


def start_sdk_worker(env: dict[str, str], engine_port: int, *, engine: str = "llama-server",
                     api_key: str | None = None, concurrency: int = 1, log_path: Path | None = None,
                     extra_env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> SdkWorker:
    """Start the worker for the double's `env` (PlatformDouble.worker_env) in front of the engine on
    127.0.0.1:engine_port; see the module docstring. Does not wait (see SdkWorker.wait_ready)."""
    home = Path(tempfile.mkdtemp(prefix="sdk-worker-home-"))
    log_path = log_path or home / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
    child_env.update({"HOME": str(home), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
                      "MAX_CONCURRENCY": str(concurrency), **env})
    if api_key:
        child_env["API_KEY"] = api_key
    child_env.update(extra_env or {})
    cmd = [sys.executable, "-m", "remote_agent", "serverless-worker", "--engine-url",
           f"http://127.0.0.1:{engine_port}", "--engine", engine, *args]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=home, env=child_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    # A safety net for a caller that dies without stop(): a worker whose platform is gone retries its
    # job-take in a tight loop (the SDK logs the refused connection and goes again), burning a core.
    atexit.register(stop_process, proc, 2.0)
    return SdkWorker(proc, log_path, home, env.get("RUNPOD_POD_ID", "?"))


def sdk_worker_factory(engine_port: int, *, log_dir: Path | None = None,
                       **kwargs) -> Callable[[dict[str, str]], SdkWorker]:
    """A PlatformDouble worker_factory that starts start_sdk_worker(env, engine_port, **kwargs) per
    worker, each logging to log_dir/<worker id>.log when log_dir is given."""
    def factory(env: dict[str, str]) -> SdkWorker:
        log_path = log_dir / f"{env['RUNPOD_POD_ID']}.log" if log_dir else None
        return start_sdk_worker(env, engine_port, log_path=log_path, **kwargs)

    return factory


@contextmanager
def warm_endpoint(endpoint: str, api_key: str, engine_port: int, log_dir: Path, *, idle_timeout_s: float = 600):
    """The platform double (tests/testbed/runpod_platform.py) for endpoint with one real SDK worker
    ("w1") already taking jobs in front of the engine on engine_port: a warm endpoint. Yields the
    PlatformDouble; the worker is stopped on exit."""
    from tests.testbed.runpod_platform import PlatformDouble
    with PlatformDouble(endpoint, api_key, idle_timeout_s=idle_timeout_s) as platform:
        worker = start_sdk_worker(platform.worker_env("w1"), engine_port, log_path=Path(log_dir) / "w1.log")
        try:
            worker.wait_ready(platform, timeout_s=60)
            yield platform
        finally:
            worker.stop()
