"""A backend pod's sshd drops a frozen link within seconds, so its ggml-rpc-server (one client at a time,
RPC.md fact 4) is free again for the server pod's next llama-server.

Real parts: `remote-agent boot` in APP_MODE=backend with image/sshd_config and the test-bed sshd, the
test bed's ggml-rpc-server (SIGPIPE ignored, as the agent starts it), the cluster key authorized by the
links' own authorized_keys line, and the link's own ssh command (remote_agent/links) through that sshd.
The link's ssh is frozen with SIGSTOP (the server pod froze); a second client then asks the backend
for its RPC handshake directly.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from remote_agent.boot.config import add_boot_arguments, config_from
from remote_agent.boot.steps import sshd_command
from remote_agent.engine.rpc_wire import listening
from remote_agent.links.authorized import install, key_line
from remote_agent.links.command import BACKEND_CLIENT_ALIVE_COUNT as COUNT
from remote_agent.links.command import BACKEND_CLIENT_ALIVE_INTERVAL_S as INTERVAL
from remote_agent.links.command import ssh_command
from remote_agent.links.spec import parse_links
from tests.testbed.procs import free_port, stop_process, wait_for_port
from tests.testbed.sshd import generate_key, have_sshd

SLEEPER = f"{sys.executable} -c 'import time; time.sleep(600)'"  # the daemon: not what is tested here
HELLO = struct.pack("<BQ", 14, 24) + bytes(24)  # RPC_CMD_HELLO as rpc_wire frames it (protocol 7)
pytestmark = pytest.mark.skipif(not have_sshd(), reason="needs OpenSSH's sshd (scripts/install-system-deps.sh)")


def options_for(env: dict[str, str], *flags: str) -> list[str]:
    """The `-o` values of the sshd command boot would run with env and flags."""
    parser = argparse.ArgumentParser()
    add_boot_arguments(parser)
    cmd = sshd_command(config_from(parser.parse_args(["--root", "/nonexistent", *flags]), env))
    return [cmd[i + 1] for i, item in enumerate(cmd) if item == "-o"]


SHORT = [f"ClientAliveInterval={INTERVAL}", f"ClientAliveCountMax={COUNT}"]


@pytest.mark.parametrize("env, short", [
    ({"APP_MODE": "backend"}, True),
    ({"APP_MODE": "backend", "APP_PORT": "50100"}, True),
    ({"APP_MODE": "rank", "NODE_RANK": "2", "NUM_NODES": "3"}, True),  # an Instant Cluster member lending its GPU
    ({"APP_MODE": "rank", "NODE_RANK": "0", "NUM_NODES": "3", "MODEL": "/m.gguf"}, False),  # rank 0 serves
    ({"APP_MODE": "server", "APP_RPC_BACKENDS": "127.0.0.1:60151"}, False),
    ({"APP_MODE": "none"}, False),
    ({}, False),  # podtui's single-pod engine: the image's 30 s × 4 (tunnels through NAT, laptops that sleep)
])
def test_only_the_backend_role_shortens_sshds_client_alive(env, short):
    options = options_for({"PATH": os.environ["PATH"], **env})
    assert all(option in options for option in SHORT) is short
    if not short:  # image/sshd_config's values stand
        assert not any(option.startswith("ClientAlive") for option in options)


def test_a_client_alive_given_with_sshd_option_wins_over_the_roles():
    options = options_for({"PATH": os.environ["PATH"], "APP_MODE": "backend"}, "--sshd-option", "ClientAliveInterval=9")
    # sshd keeps the first value it reads: the user's comes first
    assert options.index("ClientAliveInterval=9") < options.index(SHORT[0])


def hello(conn: socket.socket) -> bytes:
    """Send the RPC handshake on conn and read the whole reply (ggml-rpc-server replies 8 + 28 bytes)."""
    conn.sendall(HELLO)
    reply = b""
    while len(reply) < 36:
        chunk = conn.recv(36 - len(reply))
        if not chunk:
            raise ConnectionError(f"closed after {len(reply)} bytes")
        reply += chunk
    return reply


@pytest.mark.timeout(90)
def test_a_frozen_link_frees_the_backends_rpc_server_within_10_s(make_boot, boot_root, llama_bin, tmp_path):
    rpc_port = free_port()
    run = make_boot("--exit-on-error", "--daemon-command", SLEEPER,
                    env={"APP_MODE": "backend", "APP_PORT": str(rpc_port)}).start()
    procs: list[subprocess.Popen] = []
    link_proc = None
    try:
        run.wait_for("starting the agent daemon")
        wait_for_port(run.sshd_port, timeout=20)
        assert f"-o {SHORT[0]} -o {SHORT[1]}" in run.output()
        procs.append(subprocess.Popen(
            [str(llama_bin / "ggml-rpc-server"), "-H", "127.0.0.1", "-p", str(rpc_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, restore_signals=False, start_new_session=True))
        deadline = time.monotonic() + 20
        while not listening(rpc_port, "127.0.0.1"):
            assert time.monotonic() < deadline, "ggml-rpc-server did not listen"
            time.sleep(0.05)

        cluster_key = generate_key(tmp_path / "cluster_key")
        install(boot_root / "root" / ".ssh" / "authorized_keys",
                key_line(Path(f"{cluster_key}.pub").read_text(), "127.0.0.1", rpc_port))
        host_key = (boot_root / "workspace" / ".podtui" / "ssh" / "ssh_host_ed25519_key.pub").read_text()
        known = f"backend-a {' '.join(host_key.split()[:2])}\n"
        (tmp_path / "known_hosts").write_text(known)
        (link,), _, _ = parse_links({"links": [{
            "name": "backend-a", "endpoint": f"127.0.0.1:{free_port()}", "host": "127.0.0.1", "port": run.sshd_port,
            "user": "root", "rpc_port": rpc_port, "host_key_alias": "backend-a"}],
            "known_hosts": known, "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----"})
        link_proc = subprocess.Popen(ssh_command(link, cluster_key, tmp_path / "known_hosts"), stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 20
        while not listening(link.local_port, "127.0.0.1"):
            assert link_proc.poll() is None, link_proc.stderr.read().decode(errors="replace")
            assert time.monotonic() < deadline, "the link did not listen"
            time.sleep(0.05)

        through_link = socket.create_connection(("127.0.0.1", link.local_port), timeout=10)
        try:
            hello(through_link)  # the link now holds the backend's one client slot
            os.killpg(link_proc.pid, signal.SIGSTOP)  # the server pod froze
            frozen = time.monotonic()
            with socket.create_connection(("127.0.0.1", rpc_port), timeout=15) as second:
                reply = hello(second)  # waits in the backlog until sshd drops the frozen session
                waited = time.monotonic() - frozen
        finally:
            through_link.close()
        assert struct.unpack("<Q", reply[:8])[0] == 28 and reply[8] == 7  # protocol 7.x answered
        # held while sshd waited for keepalive answers (2 s at least), then freed: 7-8 s measured, not minutes
        assert 2 < waited < 10, waited
    finally:
        if link_proc is not None:
            os.killpg(link_proc.pid, signal.SIGCONT)
            stop_process(link_proc)
        for proc in procs:
            stop_process(proc)
        run.stop()
