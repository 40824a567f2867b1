"""The SSH-host provider against the real sshd with a real `remote-agent daemon` behind it.

sshd sessions do not have the venv on PATH, so the host's agent command is
`<venv python> -m remote_agent rpc --socket <path>` (kept in podtui's config with the host).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.testbed.cli import run_podtui
from tests.testbed.cli import start_tunnel
from tests.testbed.llama import chat_completion
from tests.testbed.procs import free_port, stop_process
from tests.testbed.sshd import have_sshd

pytestmark = [pytest.mark.skipif(not have_sshd(), reason="needs openssh-server"), pytest.mark.timeout(120)]


@pytest.fixture
def agent_socket(tmp_path):
    """A real `remote-agent daemon` (no engine started) on a socket under tmp."""
    socket_path = tmp_path / "agent.sock"
    daemon = subprocess.Popen([sys.executable, "-m", "remote_agent", "daemon", "--socket", str(socket_path),
                               "--state-dir", str(tmp_path / "agent-state"), "--models-dir",
                               str(tmp_path / "models"), "--no-autostart"],
                              env={**os.environ, "PORT": str(free_port())}, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while not socket_path.exists():
        assert time.monotonic() < deadline and daemon.poll() is None, "the daemon did not create its socket"
        time.sleep(0.05)
    yield socket_path
    stop_process(daemon)


@pytest.fixture
def host_env(runpod_env):
    """podtui with no Runpod key: only the added hosts and the local pod are listed."""
    return {k: v for k, v in runpod_env.items() if k != "RUNPOD_API_KEY"}


def test_add_list_agent_tunnel_remove(host_env, sshd, client_key, agent_socket, llama_server):
    bridge = f"{sys.executable} -m remote_agent rpc --socket {agent_socket}"
    out = run_podtui(host_env, "hosts", "add", f"root@127.0.0.1:{sshd.port}", "--name", "box", "-i",
                     str(client_key), "--agent-command", bridge, "--fingerprint", sshd.host_fingerprint, "--json")
    assert out.returncode == 0, out.stderr
    added = json.loads(out.stdout)
    assert added["pinned"] == {"type": "ssh-ed25519", "fingerprint": sshd.host_fingerprint, "verified": True}
    assert added["pod"]["status"] == "RUNNING" and added["pod"]["detail"] == "engine stopped"
    assert added["pod"]["provider"] == "ssh" and added["pod"]["ssh"]["port"] == sshd.port
    config = (host_env["PODTUI_CONFIG_DIR"] + "/config.toml")
    assert os.stat(config).st_mode & 0o777 == 0o600

    listed = run_podtui(host_env, "pods", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {(p["provider"], p["id"]): p for p in json.loads(listed.stdout)["pods"]}
    assert rows[("ssh", "box")]["status"] == "RUNNING" and ("local", "local") in rows
    assert "no Runpod API key" in listed.stderr  # a note, not a failure
    table = run_podtui(host_env, "pods")
    assert table.returncode == 0 and "box" in table.stdout and "engine stopped" in table.stdout

    # the host's name is a session target: identity and agent command come from the config
    status = run_podtui(host_env, "agent", "box", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "stopped"
    logs = run_podtui(host_env, "agent", "box", "logs", "-n", "20", "--json")
    assert logs.returncode == 0 and "listening on" in logs.stdout

    tunnel = start_tunnel(host_env, "box", "-L", f"0:127.0.0.1:{llama_server.port}")
    try:
        assert tunnel.info["host_key"]["verified"] and "host box" in tunnel.info["target"]
        assert chat_completion(tunnel.local_url)["choices"][0]["message"]["content"] is not None
        assert tunnel.interrupt() == 0
    finally:
        stop_process(tunnel.proc)

    again = run_podtui(host_env, "hosts", "add", f"root@127.0.0.1:{sshd.port}", "--name", "box")
    assert again.returncode == 2 and "already added" in again.stderr
    assert run_podtui(host_env, "hosts", "remove", "box").returncode == 0
    assert "box" not in run_podtui(host_env, "hosts", "list").stdout
    gone = run_podtui(host_env, "hosts", "remove", "box")
    assert gone.returncode == 2 and "no SSH host named 'box'" in gone.stderr


def test_unreachable_hosts_say_why(host_env, sshd, client_key, tmp_path):
    closed = free_port()
    assert run_podtui(host_env, "hosts", "add", f"root@127.0.0.1:{closed}", "--name", "down").returncode == 0
    # reachable sshd, but its key was never pinned: refused before any login
    out = run_podtui(host_env, "hosts", "add", f"root@127.0.0.1:{sshd.port}", "--name", "unpinned",
                     "-i", str(client_key), "--json")
    assert out.returncode == 0, out.stderr
    pod = json.loads(out.stdout)["pod"]
    assert pod["status"] == "UNREACHABLE" and "host key" in pod["detail"] and "fix:" in pod["detail"]
    # pinned and logged in, but no daemon behind the bridge
    bridge = f"{sys.executable} -m remote_agent rpc --socket {tmp_path / 'none.sock'}"
    assert run_podtui(host_env, "hostkey", f"root@127.0.0.1:{sshd.port}", "--pin",
                      sshd.host_fingerprint).returncode == 0
    out = run_podtui(host_env, "hosts", "add", f"root@127.0.0.1:{sshd.port}", "--name", "nodaemon", "-i",
                     str(client_key), "--agent-command", bridge, "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(run_podtui(host_env, "hosts", "list", "--json").stdout)["hosts"]
    by_name = {h["name"]: h for h in listed}
    assert by_name["down"]["status"] == "UNREACHABLE" and "cannot reach 127.0.0.1" in by_name["down"]["detail"]
    assert by_name["nodaemon"]["status"] == "UNREACHABLE"
    assert "daemon is not running" in by_name["nodaemon"]["detail"]
    # a wrong fingerprint at add time is refused and nothing is saved
    bad = run_podtui(host_env, "hosts", "add", f"root@127.0.0.1:{sshd.port}", "--name", "evil",
                     "--fingerprint", "SHA256:" + "A" * 43)
    assert bad.returncode == 3 and "was not added" in bad.stderr
    assert "evil" not in run_podtui(host_env, "hosts", "list").stdout


def test_names_that_look_like_addresses_are_refused(host_env):
    for name in ("a.b", "local", "x:1", "u@h"):
        out = run_podtui(host_env, "hosts", "add", "root@127.0.0.1:22", "--name", name)
        assert out.returncode == 2 and "cannot name an SSH host" in out.stderr


def test_a_host_whose_pin_is_unverified_is_listed_as_such(host_env, sshd, client_key, agent_socket):
    from podtui.ssh.known_hosts import KnownHosts

    bridge = f"{sys.executable} -m remote_agent rpc --socket {agent_socket}"
    out = run_podtui(host_env, "hosts", "add", f"root@127.0.0.1:{sshd.port}", "--name", "box", "-i",
                     str(client_key), "--agent-command", bridge, "--fingerprint", sshd.host_fingerprint)
    assert out.returncode == 0, out.stderr
    # as if it had been trusted on first contact with --accept-unverified
    pins = KnownHosts(Path(host_env["PODTUI_CONFIG_DIR"]) / "known_hosts")
    alias = f"[127.0.0.1]:{sshd.port}"
    pins.replace(alias, [pin.key for pin in pins.pins_for(alias)], verified=False)
    listed = run_podtui(host_env, "pods", "--json")
    box = next(p for p in json.loads(listed.stdout)["pods"] if p["id"] == "box")
    assert box["status"] == "RUNNING" and "host key UNVERIFIED" in box["detail"]
