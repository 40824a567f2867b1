"""The link's cipher choice (links/command.py CIPHERS: AES-GCM first, for the logits each token brings
back) as the real OpenSSH client reads it, and as a real sshd with the image's configuration agrees to it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from remote_agent.links.authorized import key_line
from remote_agent.links.command import CIPHERS, ssh_command
from remote_agent.links.spec import parse_links
from tests.testbed.procs import free_port
from tests.testbed.sshd import SshServer, generate_key, have_sshd

pytestmark = pytest.mark.skipif(not have_sshd(), reason="needs OpenSSH (scripts/install-system-deps.sh)")


def link_for(port: int, known_hosts: str):
    (link,), _, _ = parse_links({"links": [{
        "name": "b1", "endpoint": f"127.0.0.1:{free_port()}", "host": "127.0.0.1", "port": port, "user": "root",
        "rpc_port": 50052, "host_key_alias": "b1"}], "known_hosts": known_hosts,
        "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----"})
    return link


def test_ssh_resolves_the_links_cipher_list_in_order(tmp_path):
    argv = ssh_command(link_for(2222, "b1 ssh-ed25519 AAAA\n"), tmp_path / "k", tmp_path / "kh")
    resolved = subprocess.run([argv[0], "-G", *argv[1:-1]], capture_output=True, text=True, timeout=10, check=False)
    assert resolved.returncode == 0, resolved.stderr  # a bad cipher name would be "Bad SSH2 cipher spec"
    assert f"ciphers {CIPHERS}" in resolved.stdout.splitlines()
    assert CIPHERS.split(",")[0] == "aes128-gcm@openssh.com" and "chacha20-poly1305@openssh.com" in CIPHERS


@pytest.mark.timeout(30)
def test_an_sshd_with_openssh_default_ciphers_agrees_to_aes_gcm(tmp_path):  # image/sshd_config sets none
    key = generate_key(tmp_path / "cluster_key")
    sshd = SshServer(tmp_path / "sshd")
    sshd.authorized_keys.write_text(key_line(Path(f"{key}.pub").read_text(), "127.0.0.1", 50052) + "\n")
    sshd.start()
    try:
        (tmp_path / "kh").write_text(f"b1 {sshd.host_public_key}\n")
        argv = ssh_command(link_for(sshd.port, (tmp_path / "kh").read_text()), key, tmp_path / "kh")
        # the link's own command line, with -v to hear the negotiation, ended at once (stdin closed)
        verbose = [argv[0], "-o", "LogLevel=DEBUG1", *argv[1:]]  # ssh keeps the first LogLevel it reads
        out = subprocess.run(verbose, input="", capture_output=True, text=True, timeout=20, check=False)
        assert "cipher: aes128-gcm@openssh.com" in out.stderr, out.stderr[-2000:]
    finally:
        sshd.stop()
