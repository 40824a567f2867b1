"""`remote-agent boot` for real in a temporary root, with the test-bed sshd and image/sshd_config.

Checks what a user relies on: the printed block is the pod's real host key (equal to
`ssh-keygen -lf`, pinned by podtui's parser), keys survive a second boot, PUBLIC_KEY logs in,
passwords are refused, only local forwarding works, and a failure never ends the container.
"""

from __future__ import annotations

import socket
import stat
import sys
import threading
from pathlib import Path

import paramiko
import pytest

from podtui.ssh.hostkeys import parse_printed_blocks
from tests.remote_agent.boot.conftest import assert_no_secrets
from tests.testbed.procs import wait_for_port
from tests.testbed.sshd import fingerprint

SLEEPER = f"{sys.executable} -c 'import time; time.sleep(600)'"  # stands in for the daemon
CRASHER = f"{sys.executable} -c 'import sys; sys.exit(3)'"  # a daemon that really dies


def pinned_client(run, client_key: Path, known_hosts: Path) -> paramiko.SSHClient:
    """paramiko with a reject policy: only the key printed in the log is accepted."""
    block = parse_printed_blocks(run.output())
    known_hosts.write_text("".join(f"[127.0.0.1]:{run.sshd_port} {k.key_type} {k.base64}\n"
                                   for k in block.keys))
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port=run.sshd_port, username="root", key_filename=str(client_key),
                   look_for_keys=False, allow_agent=False, timeout=10)
    return client


def start_real(make_boot, *extra, env=None):
    run = make_boot("--exit-on-error", "--daemon-command", SLEEPER, *extra, env=env).start()
    run.wait_for("starting the agent daemon")
    wait_for_port(run.sshd_port, timeout=20)
    return run


@pytest.mark.timeout(90)
def test_boot_prints_the_real_host_keys_and_podtui_pins_them(make_boot, boot_root, client_key, tmp_path):
    run = start_real(make_boot)
    out = run.output()
    key_dir = boot_root / "workspace" / ".podtui" / "ssh"
    block = parse_printed_blocks(out)
    assert block.pod == "podtest123"
    assert [k.key_type for k in block.keys] == ["ssh-ed25519", "ecdsa-sha2-nistp256"]
    assert [k.fingerprint for k in block.keys] == [
        fingerprint(key_dir / "ssh_host_ed25519_key.pub"), fingerprint(key_dir / "ssh_host_ecdsa_key.pub")]
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((key_dir / "ssh_host_ed25519_key").stat().st_mode) == 0o600
    assert "podtui tunnel podtest123" in out
    assert f"ssh -N -L 5002:127.0.0.1:{run.env['PORT']} root@203.0.113.7 -p 40022" in out

    client = pinned_client(run, client_key, tmp_path / "known_hosts")
    try:
        _, stdout, _ = client.exec_command("echo logged-in")
        assert stdout.read().strip() == b"logged-in"
        # The server proved it holds the private half of a printed key (paramiko checked it).
        served = client.get_transport().get_remote_server_key()
        assert f"{served.get_name()} {served.get_base64()}" in {f"{k.key_type} {k.base64}" for k in block.keys}
    finally:
        client.close()
    assert_no_secrets(run.output())
    assert run.terminate() == 0


@pytest.mark.timeout(90)
def test_second_boot_keeps_the_keys_and_authorized_keys_stays_deduplicated(make_boot, boot_root, client_key):
    first = start_real(make_boot)
    first_block = parse_printed_blocks(first.output())
    assert first.terminate() == 0
    doubled = f"{first.env['PUBLIC_KEY']}\n{first.env['PUBLIC_KEY']}"
    second = start_real(make_boot, env={"PUBLIC_KEY": doubled})
    assert parse_printed_blocks(second.output()).keys == first_block.keys
    assert "kept the existing ed25519 host key" in second.output()
    authorized = boot_root / "root" / ".ssh" / "authorized_keys"
    lines = [line for line in authorized.read_text().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].split()[:2] == first.env["PUBLIC_KEY"].split()[:2]
    assert stat.S_IMODE(authorized.stat().st_mode) == 0o600
    assert stat.S_IMODE(authorized.parent.stat().st_mode) == 0o700
    assert second.terminate() == 0


@pytest.mark.timeout(90)
def test_passwords_are_refused_and_only_local_forwarding_works(make_boot, client_key, tmp_path):
    run = start_real(make_boot)
    sock = socket.create_connection(("127.0.0.1", run.sshd_port), timeout=10)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password("root", "root")
        assert refused.value.allowed_types == ["publickey"]  # no password, no keyboard-interactive
    finally:
        transport.close()

    # A local forward (what `podtui tunnel` / `ssh -L` use) reaches the pod's loopback.
    listener = socket.create_server(("127.0.0.1", 0))
    target_port = listener.getsockname()[1]
    threading.Thread(target=lambda: listener.accept()[0].sendall(b"engine-here"), daemon=True).start()
    client = pinned_client(run, client_key, tmp_path / "known_hosts")
    try:
        channel = client.get_transport().open_channel(
            "direct-tcpip", ("127.0.0.1", target_port), ("127.0.0.1", 0), timeout=10)
        assert channel.recv(64) == b"engine-here"
        channel.close()
        with pytest.raises(paramiko.SSHException):
            client.get_transport().request_port_forward("127.0.0.1", 0)  # remote forwarding off
    finally:
        client.close()
        listener.close()
    assert run.terminate() == 0


@pytest.mark.timeout(90)
def test_a_dying_daemon_leaves_the_pod_up_with_sshd_for_debugging(make_boot, client_key, tmp_path):
    run = make_boot("--daemon-command", CRASHER).start()
    out = run.wait_for("staying up")
    assert "ERROR: the agent daemon exited with code 3" in out
    assert "what to do: sshd is still up" in out
    assert run.proc.poll() is None
    client = pinned_client(run, client_key, tmp_path / "known_hosts")  # still reachable to look around
    try:
        _, stdout, _ = client.exec_command("echo still-here")
        assert stdout.read().strip() == b"still-here"
    finally:
        client.close()
    assert run.terminate() == 1
    assert_no_secrets(run.output())


@pytest.mark.timeout(60)
def test_unrecoverable_error_says_what_to_do_and_exits_only_when_asked(make_boot):
    exiting = make_boot("--exit-on-error", "--sshd", "/nonexistent/sshd").start()
    assert exiting.wait_exit() == 1
    assert "ERROR: sshd is not at /nonexistent/sshd" in exiting.output()
    assert "what to do: install openssh-server" in exiting.output()

    holding = make_boot("--sshd", "/nonexistent/sshd").start()
    holding.wait_for("staying up")
    assert holding.proc.poll() is None
    assert holding.terminate() == 1


@pytest.mark.timeout(60)
def test_a_damaged_host_key_is_not_silently_replaced(make_boot, boot_root):
    key_dir = boot_root / "workspace" / ".podtui" / "ssh"
    key_dir.mkdir(parents=True)
    (key_dir / "ssh_host_ed25519_key").write_text("not a key\n")
    run = make_boot("--exit-on-error").start()
    assert run.wait_exit() == 1
    assert "cannot be read" in run.output() and "move" in run.output()
    assert (key_dir / "ssh_host_ed25519_key").read_text() == "not a key\n"


@pytest.mark.timeout(120)
def test_boot_starts_the_real_daemon_which_serves_model_from_the_environment(
        make_boot, boot_root, client_key, llama_bin, tiny_model, tmp_path):
    import json
    import time
    import urllib.error
    import urllib.request

    run = make_boot("--exit-on-error", env={
        "MODEL": str(tiny_model), "CTX": "1024",
        "REMOTE_AGENT_ENGINE_BIN_DIR": str(llama_bin)}).start()
    run.wait_for("starting the agent daemon")
    port = int(run.env["PORT"])
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert run.proc.poll() is None, run.output()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    else:
        raise AssertionError(f"the engine never answered on {port}:\n{run.output()}")
    # The engine requires the key boot generated on the volume (the daemon read the same file).
    key_file = boot_root / "workspace" / ".podtui" / "agent" / "engine-api-key"
    key = key_file.read_text().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert f"the engine requires an API key, kept in {key_file}" in run.output()
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert tiny_model.name in json.dumps(json.load(response))
    socket_path = boot_root / "run" / "remote-agent" / "agent.sock"
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
    # The tunnel a user opens reaches the engine: a pinned SSH local forward to the engine port.
    client = pinned_client(run, client_key, tmp_path / "known_hosts")
    try:
        channel = client.get_transport().open_channel(
            "direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0), timeout=10)
        channel.sendall(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        assert b"200" in channel.recv(64)
        channel.close()
    finally:
        client.close()
    assert_no_secrets(run.output())
    assert key not in run.output()
    assert run.terminate() == 0
