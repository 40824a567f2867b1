"""`podtui tunnel POD --jupyter` and `podtui launch --jupyter` (issue 20), through the real entry point.

The tunnel goes to a real `remote-agent boot` (test-bed sshd, real daemon, real Jupyter: jupyter_server from
the test extra) started once for the module; the launch goes to the Runpod REST double, which checks the
create body against Runpod's published schema (it is a double: no pod is created anywhere)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.parse

import httpx
import pytest

from podtui.ssh.hostkeys import parse_printed_blocks
from tests.remote_agent.boot.jupyter_boot import start_jupyter_boot
from tests.testbed.cli import PODTUI, run_podtui, start_tunnel
from tests.testbed.procs import stop_process
from tests.testbed.sshd import have_sshd

pytestmark = [pytest.mark.skipif(not have_sshd(), reason="needs openssh-server"), pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def pod(tmp_path_factory, client_key):
    run = start_jupyter_boot(tmp_path_factory.mktemp("jupyter-pod"), client_key)
    yield run
    run.stop()


def tunnel_args(pod, client_key) -> list[str]:
    """Target, key, the printed fingerprint and the agent bridge for the booted pod (its socket is under
    the boot's temporary root, so `remote-agent rpc` is told where)."""
    fingerprint = parse_printed_blocks(pod.output()).keys[0].fingerprint
    socket = pod.root / "run" / "remote-agent" / "agent.sock"
    return [f"ssh://root@127.0.0.1:{pod.sshd_port}", "-i", str(client_key), "--fingerprint", fingerprint,
            "--agent-command", f"{sys.executable} -m remote_agent rpc --socket {socket}"]


def jupyter_token(pod) -> str:
    return (pod.root / "workspace" / ".podtui" / "agent" / "jupyter-token").read_text().strip()


def test_tunnel_jupyter_prints_a_url_with_the_token_that_opens_jupyter_through_the_tunnel(
        pod, client_key, podtui_env, tunnels):
    target, *rest = tunnel_args(pod, client_key)
    tunnel = start_tunnel(podtui_env, target, "--jupyter", "-L", f"0:127.0.0.1:{pod.env['PORT']}",
                          "-L", f"0:127.0.0.1:{pod.env['JUPYTER_PORT']}", *rest)
    tunnels.append(tunnel)
    notebook = tunnel.info["jupyter"]
    url = urllib.parse.urlsplit(notebook["url"])
    assert notebook["state"] == "running" and notebook["remote"] == f"127.0.0.1:{pod.env['JUPYTER_PORT']}"
    assert url.path == "/lab" and urllib.parse.parse_qs(url.query) == {"token": [jupyter_token(pod)]}
    local = f"http://{url.netloc}"
    assert url.port != int(pod.env["JUPYTER_PORT"])  # the local end of the forward, not Jupyter's own port
    assert httpx.get(f"{local}/api/status", params={"token": jupyter_token(pod)}, timeout=10).status_code == 200
    assert httpx.get(f"{local}/api/status", timeout=10).status_code == 403  # the tunnel adds no access
    assert tunnel.info["api_key"]  # the engine's key still comes with it
    assert tunnel.interrupt() == 0


def test_tunnel_jupyter_in_text_mode_prints_the_url_line(pod, client_key, podtui_env):
    target, *rest = tunnel_args(pod, client_key)
    proc = subprocess.Popen([PODTUI, "tunnel", target, "--jupyter", "-L", f"0:127.0.0.1:{pod.env['JUPYTER_PORT']}",
                             *rest], env=podtui_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        for line in iter(proc.stdout.readline, ""):
            lines.append(line)
            if line.startswith("Ctrl-C to stop"):
                return

    try:
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(60)
        text = "".join(lines)
        assert f"/lab?token={jupyter_token(pod)}  (running)" in text, text
        assert any(line.startswith("  Jupyter   http://127.0.0.1:") for line in lines)
    finally:
        stop_process(proc)
    # `podtui agent POD status` says Jupyter runs and how to open it, never its token.
    status = run_podtui(podtui_env, "agent", target, *rest, "status")
    assert status.returncode == 0, status.stderr
    assert f"jupyter         running on 127.0.0.1:{pod.env['JUPYTER_PORT']}" in status.stdout, status.stdout
    assert jupyter_token(pod) not in status.stdout + status.stderr


def test_tunnel_jupyter_to_a_host_without_an_agent_warns_with_the_fix_and_stays_up(sshd, client_key, podtui_env,
                                                                                  upstream, tunnels):
    tunnel = start_tunnel(podtui_env, f"ssh://root@127.0.0.1:{sshd.port}", "--jupyter",
                          "-L", f"0:127.0.0.1:{upstream.port}", "-i", str(client_key),
                          "--fingerprint", sshd.host_fingerprint)
    tunnels.append(tunnel)
    assert tunnel.info["jupyter"]["url"] is None
    assert tunnel.interrupt() == 0
    warnings = [json.loads(line) for line in tunnel.stderr_lines if '"warning"' in line]
    jupyter = [w for w in warnings if w["kind"] == "jupyter"]
    assert jupyter and jupyter[0]["message"].startswith("Jupyter: unknown: no podtui agent answered")
    assert "JUPYTER=1" in jupyter[0]["fix"]


@pytest.mark.timeout(120)
def test_launch_jupyter_sets_jupyter_1_and_never_runpods_start_jupyter(runpod_env, runpod_double):
    runpod_double.public_ssh = False  # the launch stops after the create: only its body matters here
    out = run_podtui(runpod_env, "launch", "--gpu", "NVIDIA A40", "--jupyter", "--wait-timeout", "0.5")
    assert out.returncode == 1, out.stderr
    created = [r["body"] for r in runpod_double.requests if r["method"] == "POST" and r["path"].endswith("/pods")]
    assert len(created) == 1, runpod_double.requests
    body = created[0]
    assert body["env"]["JUPYTER"] == "1"
    assert body["startJupyter"] is False  # Runpod's flag would add a JUPYTER_PASSWORD for its proxied 8888
    assert body["ports"] == ["22/tcp"]  # no 8888/http: Jupyter is reached through the tunnel only


def test_launch_refuses_a_jupyter_password_on_the_command_line(runpod_env, runpod_double):
    out = run_podtui(runpod_env, "launch", "--gpu", "NVIDIA A40", "--env", "JUPYTER_PASSWORD=pw_on_the_line_93")
    assert out.returncode == 2
    assert "JUPYTER_PASSWORD=… would put a secret on the command line" in out.stderr and "--jupyter" in out.stderr
    assert "pw_on_the_line_93" not in out.stdout + out.stderr
    assert not runpod_double.pods


def test_a_plain_forward_to_8888_without_jupyter_flag_says_nothing_about_jupyter(sshd, client_key, podtui_env,
                                                                                 tunnels):
    tunnel = start_tunnel(podtui_env, f"ssh://root@127.0.0.1:{sshd.port}", "-L", "0:127.0.0.1:8888",
                          "-i", str(client_key), "--fingerprint", sshd.host_fingerprint)
    tunnels.append(tunnel)
    assert tunnel.info["jupyter"] is None
    assert tunnel.interrupt() == 0
    assert not [line for line in tunnel.stderr_lines if '"jupyter"' in line]
