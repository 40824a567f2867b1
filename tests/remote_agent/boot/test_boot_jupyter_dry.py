"""Jupyter's boot step without starting it: DRYRUN prints the loopback-only command and changes nothing,
a bad JUPYTER_PORT is named, and serverless mode never starts Jupyter (issue 20)."""

from __future__ import annotations

import sys

import pytest

from tests.remote_agent.boot.conftest import assert_no_secrets
from tests.remote_agent.boot.jupyter_boot import JUPYTER_SERVER, PASSWORD
from tests.remote_agent.boot.test_boot_dry import snapshot
from tests.testbed.procs import free_port

pytestmark = pytest.mark.timeout(60)
SLEEPER = f"{sys.executable} -c 'import time; time.sleep(600)'"


def test_dry_run_prints_jupyters_loopback_command_and_changes_nothing(make_boot, boot_root):
    before = snapshot(boot_root)
    run = make_boot("--dry-run", "--exit-on-error", env={"JUPYTER_PASSWORD": PASSWORD}).start()
    assert run.wait_exit() == 0
    out = run.output()
    assert snapshot(boot_root) == before
    state = boot_root / "workspace" / ".podtui" / "agent"
    assert f"would write Jupyter's token into {state / 'jupyter-token'}" in out
    assert ("would start Jupyter on 127.0.0.1:8888 only (needs its token or JUPYTER_PASSWORD; notebooks in "
            f"{boot_root / 'workspace'}): /opt/jupyter/bin/jupyter-lab "
            f"--config={state / 'jupyter' / 'jupyter_server_config.json'} --no-browser --allow-root "
            "--ServerApp.ip=127.0.0.1 --ServerApp.port=8888 --ServerApp.port_retries=0 "
            f"--ServerApp.root_dir={boot_root / 'workspace'}") in out
    assert PASSWORD not in out
    assert_no_secrets(out)


def test_without_jupyter_variables_boot_says_how_to_turn_it_on(make_boot):
    run = make_boot("--dry-run", "--exit-on-error", env={"JUPYTER": "0"}).start()
    assert run.wait_exit() == 0
    assert "Jupyter is off (set JUPYTER=1 or JUPYTER_PASSWORD" in run.output()
    assert "would start Jupyter" not in run.output()


def test_a_bad_jupyter_port_is_named_with_the_fix(make_boot):
    run = make_boot("--exit-on-error", "--daemon-command", SLEEPER,
                    env={"JUPYTER": "1", "JUPYTER_PORT": "88888"}).start()
    assert run.wait_exit() == 1
    assert "ERROR: JUPYTER_PORT='88888' is not a TCP port; set 1-65535" in run.output()
    assert "what to do: fix the variable in the pod's settings" in run.output()


def test_serverless_mode_never_starts_jupyter(make_boot, boot_root):
    port = free_port()
    env = {"MODE_TO_RUN": "serverless", "MODEL": "org/repo:Q4_K_M", "JUPYTER": "1",
           "JUPYTER_PASSWORD": PASSWORD, "JUPYTER_BIN": JUPYTER_SERVER, "JUPYTER_PORT": str(port)}
    dry = make_boot("--dry-run", "--exit-on-error", env=env, real_sshd=False).start()
    assert dry.wait_exit() == 0
    assert "Jupyter" not in dry.output()
    # For real: the daemon (a sleeper) and the worker start; the worker refuses to run outside an endpoint
    # (no RUNPOD_WEBHOOK_GET_JOB) and the worker exits, ending boot: Jupyter was never started.
    real = make_boot("--daemon-command", SLEEPER, env=env, real_sshd=False).start()
    assert real.wait_exit(timeout=45) == 1
    assert "starting the serverless worker" in real.output()
    assert "Jupyter" not in real.output()
    assert not list(boot_root.rglob("jupyter*"))


def test_jupyter_missing_from_the_image_is_a_warning_and_boot_goes_on(make_boot, boot_root):
    run = make_boot("--exit-on-error", "--daemon-command", SLEEPER,
                    env={"JUPYTER": "1", "JUPYTER_BIN": str(boot_root / "no" / "jupyter-lab")}).start()
    out = run.wait_for("idle auto-stop is off")
    assert f"WARNING: JUPYTER is set but Jupyter is not installed at {boot_root / 'no' / 'jupyter-lab'}" in out
    assert "set JUPYTER_BIN" in out
    assert run.proc.poll() is None and not list(boot_root.rglob("jupyter.json"))
    assert run.terminate() == 0


def test_a_boot_without_jupyter_clears_the_state_an_earlier_boot_left(make_boot, boot_root):
    state = boot_root / "workspace" / ".podtui" / "agent" / "jupyter.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"state": "running", "port": 8888, "pid": 1}')
    run = make_boot("--exit-on-error", "--daemon-command", SLEEPER).start()
    run.wait_for("idle auto-stop is off")
    assert not state.exists()  # status would have shown a Jupyter that this boot does not run
    assert run.terminate() == 0
