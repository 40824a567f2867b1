"""The local pod for real: `podtui local start` runs `remote-agent daemon` here with the test bed's
CPU llama-server on a tiny model; the agent is reached through a local `remote-agent rpc` bridge."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.testbed.cli import run_podtui
from tests.testbed.llama import chat_completion
from tests.testbed.procs import free_port

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def local_env(runpod_env):
    """No Runpod key: what a person with a GPU at home and no cloud account sees."""
    env = {k: v for k, v in runpod_env.items() if k != "RUNPOD_API_KEY"}
    yield env
    run_podtui(env, "local", "stop")  # never leave a daemon behind, whatever failed


def _port_answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
        return True
    except OSError:
        return False


def test_local_pod_start_list_chat_agent_stop(local_env, llama_bin, tiny_model, tmp_path):
    out = run_podtui(local_env, "pods", "--json")
    assert out.returncode == 0, out.stderr  # no Runpod key is a note, not an error
    (local,) = [p for p in json.loads(out.stdout)["pods"] if p["provider"] == "local"]
    assert local["id"] == "local" and local["status"] == "STOPPED" and "podtui local start" in local["detail"]

    port = free_port()
    # API_KEY in a shell usually belongs to another service: the local daemon must not take it
    shell = {**local_env, "API_KEY": "some-other-services-key", "LLAMA_API_KEY": "another-one"}
    out = run_podtui(shell, "local", "start", "--model", str(tiny_model), "--ctx", "512", "--port", str(port),
                     "--engine-bin-dir", str(llama_bin), "--models-dir", str(tmp_path / "models"), "--json",
                     timeout=120)
    assert out.returncode == 0, out.stderr
    started = json.loads(out.stdout)
    assert started["status"]["state"] == "ready" and started["base_url"] == f"http://127.0.0.1:{port}/v1"
    key = started["api_key"]
    assert key and key not in ("some-other-services-key", "another-one") and key not in json.dumps(started["status"])
    with pytest.raises(urllib.error.HTTPError, match="401"):   # what any web page would get
        chat_completion(f"http://127.0.0.1:{port}")
    assert chat_completion(f"http://127.0.0.1:{port}", api_key=key)["choices"][0]["message"]["content"] is not None
    shown = run_podtui(local_env, "local", "status")
    assert f"  base URL  http://127.0.0.1:{port}/v1\n  API key   {key}\n" in shown.stdout
    assert json.loads(run_podtui(local_env, "local", "status", "--json").stdout)["api_key"] == key

    listed = json.loads(run_podtui(local_env, "pods", "--json").stdout)
    (local,) = [p for p in listed["pods"] if p["provider"] == "local"]
    assert local["status"] == "RUNNING" and local["model"].endswith(tiny_model.name)
    assert local["engine_port"] == port and local["detail"].startswith("engine ready")
    assert listed["running"] == 1 and listed["running_cost_per_hr"] == 0

    status = run_podtui(local_env, "agent", "local", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "ready"
    logs = run_podtui(local_env, "agent", "local", "logs", "-n", "50", "--source", "engine", "--json")
    assert logs.returncode == 0 and logs.stdout.strip()

    again = run_podtui(local_env, "local", "start")
    assert again.returncode == 1 and "already running" in again.stderr
    tunnel = run_podtui(local_env, "tunnel", "local")
    assert tunnel.returncode == 2 and "no SSH connection" in tunnel.stderr
    assert f"http://127.0.0.1:{port}/v1" in tunnel.stderr          # the real port, not a placeholder

    pid = started["pid"]
    out = run_podtui(local_env, "local", "stop", "--json")
    assert out.returncode == 0 and json.loads(out.stdout) == {"stopped": True, "pid": pid}
    assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split(")")[1][:3]
    assert not _port_answers(port)  # the daemon stopped its engine
    status = json.loads(run_podtui(local_env, "local", "status", "--json").stdout)
    assert status["status"] == "STOPPED"

    # resume: the daemon restarts the last good config it saved, on the same port
    out = run_podtui(local_env, "resume", "local", "--json")
    assert out.returncode == 0, out.stderr
    deadline_ok = False
    for _ in range(100):
        status = json.loads(run_podtui(local_env, "local", "status", "--json").stdout)
        if status["detail"].startswith("engine ready"):
            deadline_ok = True
            break
        import time
        time.sleep(0.2)
    assert deadline_ok, status
    assert status["api_key"] == key   # the key outlives the daemon: it is kept in the state dir
    assert chat_completion(f"http://127.0.0.1:{port}", api_key=key)["choices"][0]["message"]["content"] is not None


def test_no_api_key_runs_the_local_engine_keyless_and_warns(local_env, llama_bin, tiny_model, tmp_path):
    port = free_port()
    out = run_podtui(local_env, "local", "start", "--model", str(tiny_model), "--ctx", "512", "--port", str(port),
                     "--engine-bin-dir", str(llama_bin), "--models-dir", str(tmp_path / "models"), "--no-api-key",
                     timeout=120)
    assert out.returncode == 0, out.stderr
    assert "API key   none" in out.stdout and "WITHOUT an API key (API_KEY=none)" in out.stderr
    assert chat_completion(f"http://127.0.0.1:{port}")["choices"]
    assert json.loads(run_podtui(local_env, "local", "status", "--json").stdout)["api_key"] is None


def test_a_bad_model_fails_clearly_and_the_agent_stays_reachable(local_env, llama_bin, tmp_path):
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not gguf" * 100)
    out = run_podtui(local_env, "local", "start", "--model", str(bogus), "--port", str(free_port()),
                     "--engine-bin-dir", str(llama_bin), "--models-dir", str(tmp_path / "models"), timeout=120)
    assert out.returncode == 1 and "the local engine" in out.stderr and "podtui agent local swap" in out.stderr
    assert "not_gguf" in out.stdout and "no model yet" not in out.stdout   # the summary names the failure
    assert run_podtui(local_env, "agent", "local", "status").returncode == 0


def test_agent_local_without_a_daemon_says_how_to_start_it(local_env):
    out = run_podtui(local_env, "agent", "local", "status")
    assert out.returncode == 1 and "podtui local start" in out.stderr


def test_local_start_with_a_ctx_the_agent_refuses_exits_2_and_starts_nothing(local_env):
    out = run_podtui(local_env, "local", "start", "--model", "org/repo:Q4_K_M", "--ctx", "0")
    assert out.returncode == 2, out.stderr
    assert 'ctx must be a positive integer or "auto"' in out.stderr
    assert not (Path(local_env["PODTUI_STATE_DIR"]) / "local" / "daemon.pid").exists()
