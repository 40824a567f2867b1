"""Smoke tests that prove each real part of the test bed works."""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko
import pytest

from tests.testbed.llama import chat_completion
from tests.testbed.procs import run_with_address_space_limit
from tests.testbed.sshd import SshServer


def test_command_runs_through_sshd_with_a_known_host_key(sshd, client_key, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line())
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", sshd.port, username="root", key_filename=str(client_key),
                   allow_agent=False, look_for_keys=False, timeout=10)
    try:
        _, stdout, _ = client.exec_command("echo hello-from-sshd")
        assert stdout.read().decode().strip() == "hello-from-sshd"
    finally:
        client.close()


def test_another_host_key_on_the_same_port_is_rejected(sshd, client_key, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line())
    port = sshd.port
    sshd.stop()
    impostor = SshServer(tmp_path / "impostor", port=port)
    impostor.authorize(Path(f"{client_key}.pub"))
    impostor.start()
    try:
        client = paramiko.SSHClient()
        client.load_host_keys(str(known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        with pytest.raises(paramiko.BadHostKeyException):
            client.connect("127.0.0.1", port, username="root", key_filename=str(client_key),
                           allow_agent=False, look_for_keys=False, timeout=10)
        client.close()
    finally:
        impostor.stop()


def test_openssh_client_agrees_with_the_fixture(sshd, client_key, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line())
    out = subprocess.run(
        ["ssh", "-p", str(sshd.port), "-i", str(client_key), "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
         "root@127.0.0.1", "echo ok"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_llama_server_answers_a_chat_completion(llama_server):
    reply = chat_completion(llama_server.base_url, "Say something", max_tokens=8)
    assert reply["object"] == "chat.completion"
    assert reply["usage"]["completion_tokens"] > 0
    assert isinstance(reply["choices"][0]["message"]["content"], str)


def test_large_context_fails_under_an_address_space_limit(llama_bin, tiny_model):
    """The CPU stand-in for CUDA out-of-memory: llama.cpp's own allocation error, exit code 1."""
    base = [str(llama_bin / "llama-server"), "-m", str(tiny_model), "--host", "127.0.0.1",
            "--port", "1", "-t", "1"]  # port 1: it must fail before ever serving
    result = run_with_address_space_limit([*base, "-c", "1048576"], limit_bytes=1_500_000 * 1024)
    assert result.returncode != 0
    assert "insufficient memory" in result.stdout or "failed to allocate" in result.stdout, result.stdout[-2000:]


def test_fit_params_reports_llama_cpps_own_estimate(llama_bin, tiny_model):
    out = subprocess.run([str(llama_bin / "llama-fit-params"), "-m", str(tiny_model), "-c", "65536",
                          "-fitp", "on"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    fields = out.stdout.split()
    assert fields[0] == "Host" and all(f.isdigit() for f in fields[1:4]), out.stdout
