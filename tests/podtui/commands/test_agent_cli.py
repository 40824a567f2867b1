"""`podtui agent` over the real sshd: an exec channel speaking the agent protocol.

Most tests run tests/podtui/commands/agent_double.py as the remote command (a protocol double, see its
docstring: it can misbehave on purpose); one runs the real `remote-agent daemon` and `rpc` bridge.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.testbed.cli import PODTUI, run_podtui
from tests.testbed.sshd import have_sshd

pytestmark = [pytest.mark.skipif(not have_sshd(), reason="needs openssh-server"),
              pytest.mark.timeout(60)]

DOUBLE = Path(__file__).with_name("agent_double.py")


@pytest.fixture
def agent_args(sshd, client_key):
    return ["agent", f"root@127.0.0.1:{sshd.port}", "-i", str(client_key),
            "--fingerprint", sshd.host_fingerprint, "--agent-command", f"{sys.executable} {DOUBLE}"]


def test_status_json_and_human(agent_args, podtui_env):
    out = run_podtui(podtui_env, *agent_args, "status", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state"] == "ready"
    out = run_podtui(podtui_env, *agent_args, "status")
    assert "model           tiny-a.gguf" in out.stdout


def test_models_and_swap_with_progress_events(agent_args, podtui_env):
    out = run_podtui(podtui_env, *agent_args, "models", "--json")
    assert json.loads(out.stdout)[0]["name"] == "tiny-a.gguf"
    out = run_podtui(podtui_env, *agent_args, "swap", "tiny-b.gguf", "--ctx", "4096", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["model"] == "tiny-b.gguf"
    events = [json.loads(line) for line in out.stderr.splitlines()]
    assert [e["event"] for e in events] == ["progress", "progress", "state"]


def test_agent_errors_are_reported_with_their_code(agent_args, podtui_env):
    out = run_podtui(podtui_env, *agent_args, "swap", "broken.gguf")
    assert out.returncode == 1
    assert "rolled back to tiny-a.gguf" in out.stderr and "bad_model" in out.stderr
    out = run_podtui(podtui_env, *agent_args, "swap", "x", "--ctx", "huge")
    assert out.returncode == 2


def test_logs_tail_and_follow_until_ctrl_c(agent_args, podtui_env):
    out = run_podtui(podtui_env, *agent_args, "logs", "-n", "3", "--json")
    assert [json.loads(l)["line"] for l in out.stdout.splitlines()] == ["old line 0", "old line 1", "old line 2"]
    proc = subprocess.Popen([PODTUI, *agent_args, "logs", "-f"], env=podtui_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = [proc.stdout.readline() for _ in range(3)]
    assert first[2].split() == ["engine", "line", "2"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0


def test_host_key_rules_apply_to_the_agent_too(sshd, client_key, podtui_env):
    out = run_podtui(podtui_env, "agent", f"root@127.0.0.1:{sshd.port}", "-i", str(client_key),
                     "--agent-command", f"{sys.executable} {DOUBLE}", "status")
    assert out.returncode == 3 and "first contact" in out.stderr


def test_missing_agent_is_a_clear_error(sshd, client_key, podtui_env):
    out = run_podtui(podtui_env, "agent", f"root@127.0.0.1:{sshd.port}", "-i", str(client_key),
                     "--fingerprint", sshd.host_fingerprint, "--agent-command", "false", "status")
    assert out.returncode == 1
    assert "did not greet" in out.stderr and "remote-agent daemon" in out.stderr


def test_status_from_the_real_daemon_through_sshd(sshd, client_key, podtui_env, tmp_path):
    socket_path = tmp_path / "agent.sock"
    daemon = subprocess.Popen([sys.executable, "-m", "remote_agent", "daemon", "--socket", str(socket_path),
                               "--state-dir", str(tmp_path / "state"), "--models-dir", str(tmp_path / "models")],
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not socket_path.exists():
            assert time.monotonic() < deadline and daemon.poll() is None, "daemon did not create its socket"
            time.sleep(0.05)
        base = ["agent", f"root@127.0.0.1:{sshd.port}", "-i", str(client_key), "--fingerprint",
                sshd.host_fingerprint, "--agent-command", f"{sys.executable} -m remote_agent rpc --socket {socket_path}"]
        out = run_podtui(podtui_env, *base, "status", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["state"] in ("stopped", "starting", "ready", "failed", "paused")
        key = (tmp_path / "state" / "engine-api-key").read_text().strip()
        human = run_podtui(podtui_env, *base, "status")
        assert "api_key         required" in human.stdout
        assert key not in out.stdout + human.stdout   # status never carries the engine's key
        out = run_podtui(podtui_env, *base, "models", "--json")
        assert out.returncode == 0, out.stderr
        assert isinstance(json.loads(out.stdout), list)
        out = run_podtui(podtui_env, *base, "logs", "-n", "5", "--json")
        assert out.returncode == 0, out.stderr
        # follow until Ctrl-C: cancel must end it cleanly
        proc = subprocess.Popen([PODTUI, *base, "logs", "-f"], env=podtui_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0, proc.stderr.read()
    finally:
        from tests.testbed.procs import stop_process
        stop_process(daemon)


@pytest.mark.parametrize("ctx, value", [("AUTO", "auto"), ("auto", "auto"), ("512", 512)])
def test_swap_sends_ctx_as_the_agent_reads_it(agent_args, podtui_env, ctx, value):
    out = run_podtui(podtui_env, *agent_args, "swap", "tiny-b.gguf", "--ctx", ctx, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["ctx"] == value   # the double answers with the ctx it was sent


def test_swap_with_a_ctx_the_agent_refuses_exits_2_before_connecting(podtui_env, upstream):
    """--ctx 0 passed the CLI once and the pod refused it; now nothing is even connected."""
    out = run_podtui(podtui_env, "agent", f"root@127.0.0.1:{upstream.port}", "swap", "tiny-b.gguf",
                     "--ctx", "0")
    assert out.returncode == 2, out.stderr
    assert 'ctx must be a positive integer or "auto"' in out.stderr and "Traceback" not in out.stderr
    assert upstream.connections == 0
