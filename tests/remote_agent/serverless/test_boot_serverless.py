"""`remote-agent boot` with MODE_TO_RUN=serverless as the image runs it: the real daemon supervises the
real llama-server, the worker runs the real SDK loop against the double; and pod mode unchanged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.remote_agent.serverless.conftest import job_error, wait_until
from tests.testbed.agent_daemon import AgentClient
from tests.testbed.procs import free_port, stop_process
from tests.testbed.sdk_worker import PASS_THROUGH

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[3]
BOOT = [sys.executable, "-m", "remote_agent", "boot"]
HF_TOKEN = "hf_serverless_secret_never_print_41b"


def boot_env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
    env.update(HOME=str(root / "home"), PYTHONPATH=str(REPO), **extra)
    (root / "home").mkdir(parents=True, exist_ok=True)
    return env


def run_boot(root: Path, env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*BOOT, "--root", str(root), *args], env=env, cwd=root / "home", stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


@pytest.fixture
def booted(tmp_path, platform, llama_bin, tiny_model):
    """boot in serverless mode (2 jobs at once) as a process; yields (process, log path, socket)."""
    env = boot_env(tmp_path, **platform.worker_env("wb"), MODE_TO_RUN="serverless", MODEL=str(tiny_model),
                   REMOTE_AGENT_ENGINE_BIN_DIR=str(llama_bin), PORT=str(free_port()), MAX_CONCURRENCY="2",
                   CTX="8192", HF_TOKEN=HF_TOKEN)
    log_path = tmp_path / "boot.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*BOOT, "--root", str(tmp_path)], env=env, cwd=tmp_path / "home", stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    yield proc, log_path, tmp_path / "run" / "remote-agent" / "agent.sock"
    stop_process(proc, grace=15)


def test_a_serverless_boot_serves_jobs_and_a_killed_engine_fails_its_job_then_restarts(booted, platform, runtime):
    proc, log_path, socket = booted
    # queued before the worker is up: it waits (IN_QUEUE) until the engine serves, then runs
    first = platform.submit({"prompt": "Hello", "max_tokens": 4})
    done = platform.wait_for(first, timeout_s=60)
    assert done["status"] == "COMPLETED" and done["output"][0]["text"], (done, log_path.read_text())
    with AgentClient(socket) as agent:
        status = agent.result("status")
        engine_key = agent.result("engine.api_key")["api_key"]
    assert status["state"] == "ready" and status["engine"] == "llama-server"

    body = {"prompt": "Once", "max_tokens": 3500, "stream": True, "ignore_eos": True}
    job_id = platform.submit({"openai_route": "/v1/completions", "openai_input": body})
    wait_until(lambda: len(platform.job(job_id)["stream"]) >= 3, 20, "three streamed chunks")
    os.kill(status["pid"], signal.SIGKILL)
    killed = time.monotonic()
    job = platform.wait_for(job_id, timeout_s=10)
    assert time.monotonic() - killed < 5  # promptly, not at REQUEST_TIMEOUT
    error = job_error(job)
    assert error["kind"] == "crashed" and "SIGKILL" in error["message"], error
    assert error["engine"] == "llama-server" and error["engine_state"] in ("failed", "starting", "ready"), error

    # the daemon restarts the engine (no crash loop, no dead worker): the next job is served
    again = runtime.runsync({"prompt": "Hi", "max_tokens": 3})
    assert again["status"] == "COMPLETED", again

    os.kill(proc.pid, signal.SIGTERM)  # Runpod's stop: worker first (it drains), then the daemon
    assert proc.wait(30) == 0
    out = log_path.read_text()
    assert "--parallel 2" in out  # the engine's slots match MAX_CONCURRENCY
    assert "starting sshd" not in out and "BEGIN PODTUI HOST KEYS" not in out
    for secret in (engine_key, platform.worker_key, HF_TOKEN):
        assert secret not in out


def test_an_engine_that_cannot_start_fails_each_job_with_its_reason_instead_of_a_crash_loop(
        tmp_path, platform, runtime, llama_bin):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a model at all" * 100)
    env = boot_env(tmp_path, **platform.worker_env("wx"), MODE_TO_RUN="serverless", MODEL=str(broken),
                   REMOTE_AGENT_ENGINE_BIN_DIR=str(llama_bin), PORT=str(free_port()))
    with open(tmp_path / "boot.log", "wb") as log:
        proc = subprocess.Popen([*BOOT, "--root", str(tmp_path)], env=env, cwd=tmp_path / "home", stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        job = runtime.runsync({"prompt": "Hi"})
        error = job_error(job)
        assert error["kind"] == "not_gguf" and str(broken) in error["message"], error
        assert error["engine_state"] == "failed" and error["fix"]
        started = time.monotonic()
        again = job_error(runtime.runsync({"openai_route": "/v1/models"}))
        assert again["kind"] == "not_gguf" and time.monotonic() - started < 2  # at once, not after a wait
        assert proc.poll() is None  # the worker stays, serving the reason
    finally:
        stop_process(proc, grace=15)


def dry_run(tmp_path: Path, **env: str) -> str:
    out = run_boot(tmp_path, boot_env(tmp_path, MODEL="org/repo:Q4_K_M", **env), "--dry-run")
    assert out.returncode == 0, out.stdout
    return out.stdout


def test_pod_mode_is_the_default_and_unchanged(tmp_path):
    unset = dry_run(tmp_path)
    assert dry_run(tmp_path, MODE_TO_RUN="pod") == unset == dry_run(tmp_path, MODE_TO_RUN=" POD ")
    assert "start sshd" in unset and "serverless" not in unset


def test_pod_mode_never_imports_runpod(tmp_path):
    """The pod path (boot, the daemon's modules, the CLI) never loads the SDK; only the worker does."""
    code = (
        "import sys\n"
        "from remote_agent.cli import build_parser\n"
        "from remote_agent.boot import main_from_args\n"
        "import remote_agent.server.daemon, remote_agent.serverless.worker, remote_agent.serverless.handler\n"
        f"rc = main_from_args(build_parser().parse_args(['boot', '--dry-run', '--root', {str(tmp_path)!r}]))\n"
        "print(rc, 'runpod' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], env=boot_env(tmp_path, MODEL="org/repo"), cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "0 False", out.stdout


@pytest.mark.parametrize("env, names", [
    ({"MODE_TO_RUN": "serverless"}, "MODEL"),
    ({"MODE_TO_RUN": "serverless", "MODEL": "x", "MAX_CONCURRENCY": "0"}, "MAX_CONCURRENCY=0"),
    ({"MODE_TO_RUN": "serverless", "MODEL": "x", "CONCURRENCY_MODIFIER": "two"}, "CONCURRENCY_MODIFIER='two'"),
    ({"MODE_TO_RUN": "serverless", "MODEL": "x", "REQUEST_TIMEOUT": "-5"}, "REQUEST_TIMEOUT"),
    ({"MODE_TO_RUN": "severless", "RUNPOD_WEBHOOK_GET_JOB": "http://127.0.0.1:9/x"}, "MODE_TO_RUN='severless'"),
])
def test_bad_serverless_settings_exit_at_once_naming_the_variable(tmp_path, env, names):
    """A serverless worker that cannot start exits (a worker staying up takes no job and is billed);
    a pod with bad settings stays up instead, as before."""
    out = run_boot(tmp_path, boot_env(tmp_path, **env), timeout=20)
    assert out.returncode == 2, out.stdout
    assert names in out.stdout and "[boot] ERROR" in out.stdout and "Traceback" not in out.stdout


def test_the_worker_refuses_to_run_outside_a_runpod_endpoint(tmp_path):
    env = boot_env(tmp_path)
    out = subprocess.run([sys.executable, "-m", "remote_agent", "serverless-worker", "--engine-url",
                          "http://127.0.0.1:9"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=30)
    assert out.returncode == 2 and "RUNPOD_WEBHOOK_GET_JOB is not set" in out.stdout, out.stdout
    assert "MODE_TO_RUN=pod" in out.stdout


def test_the_serverless_dry_run_says_what_runs_and_what_does_not(tmp_path):
    out = dry_run(tmp_path, MODE_TO_RUN="serverless", MAX_CONCURRENCY="4", IDLE_STOP_MINUTES="5",
                  ENGINE="koboldcpp", BASE_PATH=str(tmp_path / "vol"))
    assert "4 job(s) at once (MAX_CONCURRENCY)" in out and "no sshd" in out
    assert "--multiuser 4" in out and "IDLE_STOP_MINUTES is ignored" in out
    assert f"models in {tmp_path / 'vol' / 'models'}" in out and "no network volume mounted" in out
    assert "would start the serverless worker" in out and "start sshd" not in out
    assert json.dumps(out).count("Traceback") == 0
