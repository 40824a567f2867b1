"""The whole path the issue asks for, in process: launch through the REST v2 double → the real
boot's printed keys pinned → the pod id resolved to the test-bed sshd (the seam `podtui tunnel
POD_ID` uses) → a verified tunnel → a chat completion from the real llama-server."""

from __future__ import annotations

import pytest

from podtui.providers.base import PodSpec
from podtui.services.pods import PodService, resolve_pod_target
from podtui.ssh.connection import ConnectOptions, SshConnection
from podtui.ssh.forwards import parse_forward
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.target import resolve_target
from podtui.ssh.trust import HostKeyPolicy
from podtui.ssh.tunnel import Tunnel
from podtui import paths
from tests.testbed.boot_logs import real_boot_log
from tests.testbed.runpod_provider import API_KEY
from tests.testbed.llama import chat_completion


@pytest.mark.timeout(180)
def test_launch_then_tunnel_by_pod_id_then_chat(provider, runpod_double, sshd, client_key, llama_server,
                                                tmp_path, monkeypatch):
    monkeypatch.setenv("PODTUI_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("RUNPOD_API_KEY", API_KEY)
    monkeypatch.setenv("PODTUI_RUNPOD_API_URL", runpod_double.url)
    monkeypatch.setenv("PODTUI_RUNPOD_LOG_QUIET_S", "0.4")
    runpod_double.ssh_host, runpod_double.ssh_port = "127.0.0.1", sshd.port
    runpod_double.boot_log = lambda pod_id: real_boot_log(pod_id, sshd.host_key, tmp_path / "boot")
    known_hosts = KnownHosts(paths.known_hosts_file())
    launched = PodService(provider, known_hosts, poll_s=0.1, wait_timeout_s=10, block_timeout_s=5).launch(
        PodSpec(gpu="NVIDIA GeForce RTX 4090", model="tiny"))

    assert resolve_pod_target("127.0.0.1:22") is None  # an SSH host, not a pod: no API call
    target = resolve_target(launched.pod.id, None, pod_resolver=resolve_pod_target)
    assert target.alias == f"podtui-{launched.pod.id}" and target.port == sshd.port
    policy = HostKeyPolicy(known_hosts, target.alias, target.label)
    connection = SshConnection(target, policy, ConnectOptions(identity=client_key, connect_timeout=5))
    tunnel = Tunnel(connection, [parse_forward(f"0:127.0.0.1:{llama_server.port}")])
    (port,) = tunnel.bind()
    try:
        outcome = tunnel.start()
        assert outcome.verified and outcome.key.fingerprint == sshd.host_fingerprint
        reply = chat_completion(f"http://127.0.0.1:{port}")
        assert reply["choices"][0]["message"]["content"] is not None
    finally:
        tunnel.stop()
