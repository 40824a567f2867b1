"""Fixtures for the image/boot tests: `remote-agent boot` as a real process in a temporary root."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.testbed.procs import free_port, stop_process

REPO = Path(__file__).resolve().parents[3]
SSHD_CONFIG = REPO / "image" / "sshd_config"
# Values that must never appear in boot's output.
SECRETS = {"HF_TOKEN": "hf_testsecret_never_print_9f3a", "RUNPOD_API_KEY": "rpa_testsecret_never_print_7c1e"}
BOOT = [sys.executable, "-m", "remote_agent", "boot"]


@dataclass
class BootRun:
    """One `remote-agent boot` process whose combined output goes to a file."""

    root: Path
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    sshd_port: int = field(default_factory=free_port)

    def start(self) -> "BootRun":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen([*BOOT, "--root", str(self.root), *self.args], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=REPO)
        log.close()
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out:
                return out
            if self.proc.poll() is not None:
                out = self.output()
                if text in out:
                    return out
                raise AssertionError(f"boot exited {self.proc.returncode} before {text!r}:\n{out}")
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout}s:\n{self.output()}")

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def terminate(self) -> int:
        """SIGTERM to boot itself (as Runpod's stop does), then the exit code."""
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(15)
        finally:
            stop_process(self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@pytest.fixture
def boot_root(tmp_path) -> Path:
    root = tmp_path / "root"
    (root / "workspace").mkdir(parents=True)  # the volume
    return root


@pytest.fixture
def boot_env(client_key) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DRYRUN", "IDLE_STOP_MINUTES", "MODEL")}
    env.update(SECRETS)
    env.update({
        "RUNPOD_POD_ID": "podtest123",
        "RUNPOD_PUBLIC_IP": "203.0.113.7",
        "RUNPOD_TCP_PORT_22": "40022",
        "PUBLIC_KEY": Path(f"{client_key}.pub").read_text().strip(),
        "PORT": str(free_port()),
    })
    return env


@pytest.fixture
def make_boot(boot_root, boot_env, tmp_path):
    """Factory: a BootRun using the repo's image/sshd_config and the test-bed sshd on loopback."""
    runs: list[BootRun] = []

    def make(*extra: str, env: dict[str, str] | None = None, real_sshd: bool = True,
             root: Path | None = None) -> BootRun:
        run = BootRun(root or boot_root, [], {**boot_env, **(env or {})},
                      tmp_path / f"boot-{len(runs)}.log")
        if real_sshd:
            run.args += ["--sshd-config", str(SSHD_CONFIG), "--sshd-port", str(run.sshd_port),
                         "--sshd-listen", "127.0.0.1",
                         # keys under /tmp: sshd's StrictModes refuses /tmp's sticky world-writable parent
                         "--sshd-option", "StrictModes=no"]
        run.args += list(extra)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.stop()


def assert_no_secrets(text: str) -> None:
    for name, value in SECRETS.items():
        assert value not in text, f"{name}'s value appeared in boot's output"
