"""One `remote-agent boot` with JUPYTER=1 for a whole test module: real sshd (test bed), real daemon, real
Jupyter (jupyter_server from the test extra: the API JupyterLab runs on; the image runs jupyter-lab)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from tests.remote_agent.boot.conftest import SECRETS, SSHD_CONFIG, BootRun
from tests.testbed.procs import free_port, wait_for_port

JUPYTER_SERVER = str(Path(sys.executable).parent / "jupyter-server")
PASSWORD = "jupyter-pass-never-print-5e2d"


def start_jupyter_boot(root: Path, client_key: Path, **extra_env: str) -> BootRun:
    """Boot in pod mode in root with Jupyter on a free port; returns once Jupyter is up (state running)."""
    (root / "workspace").mkdir(parents=True, exist_ok=True)
    (root / "home").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DRYRUN", "IDLE_STOP_MINUTES", "MODEL")}
    env.update(SECRETS)
    env.update({"HOME": str(root / "home"), "RUNPOD_POD_ID": "podjup1", "PORT": str(free_port()),
                "PUBLIC_KEY": Path(f"{client_key}.pub").read_text().strip(), "JUPYTER": "1",
                "JUPYTER_PORT": str(free_port()), "JUPYTER_BIN": JUPYTER_SERVER, "JUPYTER_PASSWORD": PASSWORD,
                **extra_env})
    run = BootRun(root, [], env, root / "boot.log")
    run.args += ["--exit-on-error", "--sshd-config", str(SSHD_CONFIG), "--sshd-port", str(run.sshd_port),
                 "--sshd-listen", "127.0.0.1", "--sshd-option", "StrictModes=no"]
    run.start()
    wait_for_port(run.sshd_port, timeout=20)
    wait_state(run, "running", timeout=60)
    return run


def state_file(run: BootRun) -> Path:
    return run.root / "workspace" / ".podtui" / "agent" / "jupyter.json"


def wait_state(run: BootRun, wanted: str, timeout: float = 30.0, **fields) -> dict:
    """Wait until boot's jupyter.json says `wanted` (and every field in fields); return it."""
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        assert run.proc.poll() is None, run.output()
        try:
            state = json.loads(state_file(run).read_text())
        except (OSError, ValueError):
            state = {}
        if state.get("state") == wanted and all(state.get(k) == v for k, v in fields.items()):
            return state
        time.sleep(0.1)
    raise AssertionError(f"Jupyter never reached {wanted} {fields} within {timeout}s (last {state}):\n{run.output()}")
