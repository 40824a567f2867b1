"""A server holds several host keys; the user may have the fingerprint of any of them.

A console often shows the ECDSA fingerprint while the server prefers ed25519: that is not an
attack, and calling it one teaches users to ignore the alarm. podtui asks for each key type, the
way `ssh-keyscan -t TYPE` does, and refuses only when no key the server holds matches.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.testbed.cli import run_podtui, start_tunnel
from tests.testbed.sshd import SshServer, fingerprint, generate_key, have_sshd

pytestmark = [pytest.mark.skipif(not have_sshd(), reason="needs openssh-server"),
              pytest.mark.timeout(120)]


@pytest.fixture
def two_key_sshd(tmp_path, client_key):
    """sshd holding an ed25519 key (preferred) and an ECDSA key."""
    ecdsa = generate_key(tmp_path / "ssh_host_ecdsa_key", "ecdsa")
    server = SshServer(tmp_path / "sshd", extra_config=f"HostKey {ecdsa}")
    server.ecdsa_fingerprint = fingerprint(Path(f"{ecdsa}.pub"))
    server.authorize(Path(f"{client_key}.pub"))
    server.start()
    yield server
    server.stop()


def _keyscan(port: int, kind: str) -> str:
    out = subprocess.run(["ssh-keyscan", "-t", kind, "-p", str(port), "127.0.0.1"], capture_output=True,
                         text=True, timeout=20).stdout
    line = next(line for line in out.splitlines() if not line.startswith("#"))
    scanned = subprocess.run(["ssh-keygen", "-lf", "-"], input=line, capture_output=True, text=True).stdout
    return scanned.split()[1]


def test_the_reference_sees_both_keys(two_key_sshd):
    assert _keyscan(two_key_sshd.port, "ecdsa") == two_key_sshd.ecdsa_fingerprint
    assert _keyscan(two_key_sshd.port, "ed25519") == two_key_sshd.host_fingerprint


def test_hostkey_pin_with_the_ecdsa_fingerprint_pins_the_ecdsa_key(two_key_sshd, client_key, podtui_env,
                                                                   upstream, tunnels):
    target = f"root@127.0.0.1:{two_key_sshd.port}"
    out = run_podtui(podtui_env, "hostkey", target, "--pin", two_key_sshd.ecdsa_fingerprint, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pins"] == [{"type": "ecdsa-sha2-nistp256",
                                                "fingerprint": two_key_sshd.ecdsa_fingerprint,
                                                "verified": True}]
    # The pin is used: the next connection asks for the ECDSA key and needs no fingerprint.
    tunnel = start_tunnel(podtui_env, target, "-L", f"0:127.0.0.1:{upstream.port}", "-i", str(client_key))
    tunnels.append(tunnel)
    assert tunnel.info["host_key"]["fingerprint"] == two_key_sshd.ecdsa_fingerprint


def test_tunnel_fingerprint_of_the_ecdsa_key_connects(two_key_sshd, client_key, podtui_env, upstream, tunnels):
    tunnel = start_tunnel(podtui_env, f"root@127.0.0.1:{two_key_sshd.port}", "-L", f"0:127.0.0.1:{upstream.port}",
                          "-i", str(client_key), "--fingerprint", two_key_sshd.ecdsa_fingerprint)
    tunnels.append(tunnel)
    assert tunnel.info["host_key"] == {"type": "ecdsa-sha2-nistp256",
                                       "fingerprint": two_key_sshd.ecdsa_fingerprint,
                                       "verified": True, "newly_pinned": True}


def test_a_fingerprint_of_no_key_the_server_holds_is_still_refused(two_key_sshd, client_key, podtui_env,
                                                                   tmp_path):
    stranger = fingerprint(Path(f"{generate_key(tmp_path / 'other', 'ecdsa')}.pub"))
    target = f"root@127.0.0.1:{two_key_sshd.port}"
    out = run_podtui(podtui_env, "hostkey", target, "--pin", stranger)
    assert out.returncode == 3
    assert two_key_sshd.host_fingerprint in out.stderr and two_key_sshd.ecdsa_fingerprint in out.stderr
    out = run_podtui(podtui_env, "tunnel", target, "-L", "0:127.0.0.1:1", "-i", str(client_key),
                     "--fingerprint", stranger)
    assert out.returncode == 3 and "someone may be in the middle" in out.stderr
    assert not (Path(podtui_env["PODTUI_CONFIG_DIR"]) / "known_hosts").exists() or \
        stranger not in (Path(podtui_env["PODTUI_CONFIG_DIR"]) / "known_hosts").read_text()


def test_a_server_offering_only_sha1_rsa_gets_the_right_fix(tmp_path, client_key, podtui_env):
    rsa = generate_key(tmp_path / "ssh_host_rsa_key", "rsa")
    server = SshServer(tmp_path / "sshd", host_key=rsa, extra_config="HostKeyAlgorithms ssh-rsa")
    server.authorize(Path(f"{client_key}.pub"))
    server.start()
    try:
        out = run_podtui(podtui_env, "tunnel", f"root@127.0.0.1:{server.port}", "-L", "0:127.0.0.1:1",
                         "-i", str(client_key), "--fingerprint", server.host_fingerprint)
        reference = subprocess.run(
            ["ssh", "-p", str(server.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-i", str(client_key), "root@127.0.0.1", "true"],
            capture_output=True, text=True, timeout=20)
    finally:
        server.stop()
    assert reference.returncode != 0 and "no matching host key type" in reference.stderr  # OpenSSH refuses too
    assert out.returncode == 4
    assert "SHA-1 `ssh-rsa`" in out.stderr and "ssh-keygen -A" in out.stderr
    assert "is an SSH server" not in out.stderr
    assert out.stderr.count("\n") == 2 and "Traceback" not in out.stderr   # error + fix, nothing else


def test_a_port_that_is_not_ssh_gives_two_lines_and_no_traceback(podtui_env, client_key):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def answer() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        out = run_podtui(podtui_env, "tunnel", f"root@127.0.0.1:{server.getsockname()[1]}",
                         "-L", "0:127.0.0.1:1", "-i", str(client_key), "--accept-unverified")
    finally:
        server.close()
    assert out.returncode == 4
    assert out.stderr.splitlines()[0].startswith("error: SSH handshake with")
    assert "is an SSH server" in out.stderr
    assert out.stderr.count("\n") == 2, out.stderr
    log = Path(podtui_env["PODTUI_STATE_DIR"]) / "logs" / "podtui.log"
    assert "Traceback" in log.read_text()   # paramiko's detail is kept, in podtui's log file


def test_forwarding_refused_by_the_server_keeps_json_stderr_clean(tmp_path, client_key, podtui_env, upstream):
    server = SshServer(tmp_path / "sshd", extra_config="AllowTcpForwarding no")
    server.authorize(Path(f"{client_key}.pub"))
    server.start()
    try:
        from tests.testbed.cli import start_tunnel as start
        tunnel = start(podtui_env, f"root@127.0.0.1:{server.port}", "-L", f"0:127.0.0.1:{upstream.port}",
                       "-i", str(client_key), "--fingerprint", server.host_fingerprint)
        try:
            with socket.create_connection(("127.0.0.1", tunnel.local_port), timeout=5) as conn:
                conn.settimeout(10)
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                assert conn.recv(100) == b""          # closed: the server refused the channel
            deadline = __import__("time").monotonic() + 5
            while "channel_failed" not in tunnel.stderr_text() and __import__("time").monotonic() < deadline:
                __import__("time").sleep(0.05)
            tunnel.interrupt()
        finally:
            if tunnel.proc.poll() is None:
                tunnel.proc.kill()
    finally:
        server.stop()
    lines = [line for line in tunnel.stderr_text().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]     # every stderr line is JSON
    failed = next(e for e in events if e["event"] == "channel_failed")
    assert "refuses port forwarding" in failed["error"] and "AllowTcpForwarding" in failed["fix"]
    assert upstream.connections == 0
