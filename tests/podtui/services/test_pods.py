"""Launch through the REST v2 double: create → RUNNING → the pod log → printed host keys pinned,
then a real SSH handshake with a reject policy against the test-bed sshd the "pod" points at."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from podtui.providers.base import PodSpec, ProviderError
from podtui.services.pods import PodService
from podtui.ssh.connection import ConnectOptions, SshConnection
from podtui.ssh.hostkeys import HostKey, PrintedBlockError, format_block
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.trust import HostKeyPolicy
from tests.testbed.boot_logs import real_boot_log
from tests.testbed.sshd import generate_key

SPEC = PodSpec(gpu="NVIDIA GeForce RTX 4090", model="org/repo:Q4_K_M", ctx="auto", idle_stop_minutes=20)


def service(provider, tmp_path, **kwargs) -> PodService:
    kwargs = {"wait_timeout_s": 10, "block_timeout_s": 3, "poll_s": 0.1, **kwargs}
    return PodService(provider, KnownHosts(tmp_path / "known_hosts"), **kwargs)


def point_at(double, sshd) -> None:
    double.ssh_host, double.ssh_port = "127.0.0.1", sshd.port


def handshake(known_hosts: KnownHosts, target, client_key) -> HostKey:
    policy = HostKeyPolicy(known_hosts, target.alias, target.label)
    with SshConnection(target, policy, ConnectOptions(identity=client_key, connect_timeout=5)) as conn:
        outcome = conn.connect()
        assert outcome.verified
        return outcome.key


@pytest.mark.timeout(90)
def test_launch_pins_the_keys_the_real_boot_printed_and_ssh_verifies_them(
        provider, runpod_double, sshd, client_key, tmp_path):
    point_at(runpod_double, sshd)
    runpod_double.boot_log = lambda pod_id: real_boot_log(pod_id, sshd.host_key, tmp_path / "boot",
                                                          prefix="2026-06-01T12:02:03Z ")
    events: list[tuple[str, str]] = []
    svc = service(provider, tmp_path)
    result = svc.launch(SPEC, lambda phase, detail: events.append((phase, detail)))
    assert result.pod.running and (result.endpoint.host, result.endpoint.port) == ("127.0.0.1", sshd.port)
    assert [pin.key.fingerprint for pin in result.pins] == [sshd.host_fingerprint]
    assert all(pin.verified for pin in result.pins)
    phases = [phase for phase, _ in events]
    assert phases[:2] == ["create", "created"] and "running" in phases and phases[-1] == "pinned"
    logs_reads = runpod_double.requests_to("GET", f"/v2/pods/{result.pod.id}/logs")
    assert logs_reads and all(r["query"]["tail"] == ["5000"] for r in logs_reads)
    # The pins work: a reject-policy handshake with the real sshd accepts exactly this key.
    target = svc.ssh_target(result.pod.id)
    assert target.alias == f"podtui-{result.pod.id}" and target.port == sshd.port
    assert handshake(svc.known_hosts, target, client_key).fingerprint == sshd.host_fingerprint
    assert runpod_double.request_violations == []


@pytest.mark.timeout(60)
def test_a_log_with_two_boots_pins_the_latest_block(provider, runpod_double, sshd, tmp_path):
    point_at(runpod_double, sshd)
    old_key = generate_key(tmp_path / "old_host_key")

    def two_boots(pod_id: str) -> str:
        first = real_boot_log(pod_id, old_key, tmp_path / "boot1")
        second = real_boot_log(pod_id, sshd.host_key, tmp_path / "boot2")
        return first + "\x1b[31m[engine] noise between boots\x1b[0m\r\n" + second

    runpod_double.boot_log = two_boots
    result = service(provider, tmp_path).launch(SPEC)
    assert [pin.key.fingerprint for pin in result.pins] == [sshd.host_fingerprint]


class CountingListener:
    """Stands where the pod's sshd would be and counts every TCP connection attempt."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


@pytest.mark.timeout(60)
def test_a_log_without_the_block_fails_clearly_after_the_bound_and_nothing_connects(
        provider, runpod_double, tmp_path):
    listener = CountingListener()
    runpod_double.ssh_host, runpod_double.ssh_port = "127.0.0.1", listener.port
    runpod_double.boot_log = lambda pod_id: "[boot] starting\n[boot] sshd failed to start\n"
    started = time.monotonic()
    with pytest.raises(PrintedBlockError) as caught:
        service(provider, tmp_path, block_timeout_s=1.5).launch(SPEC)
    assert 1.5 <= time.monotonic() - started < 15
    text = caught.value.render()
    assert "showed no host-key block within 1.5 s" in text and "nothing connected" in text
    assert "podtui terminate pod" in text  # the pod still costs money: say how to remove it
    assert not (tmp_path / "known_hosts").exists()
    assert listener.accepted == 0
    listener.sock.close()


@pytest.mark.timeout(60)
def test_a_tampered_block_is_refused_at_once(provider, runpod_double, sshd, tmp_path):
    point_at(runpod_double, sshd)
    real = HostKey.from_base64("ssh-ed25519", sshd.host_public_key.split()[1])
    block = format_block("{pod}", [real]).replace(real.fingerprint, "SHA256:" + "A" * 43)
    runpod_double.boot_log = lambda pod_id: block.replace("{pod}", pod_id)
    started = time.monotonic()
    with pytest.raises(PrintedBlockError, match="inconsistent"):
        service(provider, tmp_path, block_timeout_s=30).launch(SPEC)
    assert time.monotonic() - started < 10
    assert not (tmp_path / "known_hosts").exists()


@pytest.mark.timeout(60)
def test_a_block_printed_by_another_pod_is_refused(provider, runpod_double, sshd, tmp_path):
    point_at(runpod_double, sshd)
    runpod_double.boot_log = lambda pod_id: real_boot_log("someotherpod", sshd.host_key, tmp_path / "boot")
    with pytest.raises(PrintedBlockError, match="printed by pod 'someotherpod'"):
        service(provider, tmp_path).launch(SPEC)


@pytest.mark.timeout(60)
def test_a_pod_that_never_gets_a_public_ssh_port_times_out_clearly(provider, runpod_double, tmp_path):
    runpod_double.public_ssh = False
    with pytest.raises(ProviderError, match="not running with a public SSH port after 1 s"):
        service(provider, tmp_path, wait_timeout_s=1).launch(SPEC)


@pytest.mark.timeout(60)
def test_ssh_target_by_name_fetches_pins_once(provider, runpod_double, sshd, tmp_path):
    point_at(runpod_double, sshd)
    pod = runpod_double.add_pod("my-llm")
    runpod_double.append_log(pod["id"], real_boot_log(pod["id"], sshd.host_key, tmp_path / "boot"))
    svc = service(provider, tmp_path)
    target = svc.ssh_target("my-llm")
    assert (target.host, target.port, target.user, target.pod_id) == ("127.0.0.1", sshd.port, "root", pod["id"])
    assert [p.key.fingerprint for p in svc.known_hosts.pins_for(target.alias)] == [sshd.host_fingerprint]
    reads = len(runpod_double.requests_to("GET", f"/v2/pods/{pod['id']}/logs"))
    svc.ssh_target(pod["id"])
    assert len(runpod_double.requests_to("GET", f"/v2/pods/{pod['id']}/logs")) == reads  # pinned already
    stopped = runpod_double.add_pod("sleeping", status="EXITED")
    with pytest.raises(ProviderError, match="is EXITED, not running") as caught:
        svc.ssh_target(stopped["id"])
    assert f"podtui resume {stopped['id']}" in caught.value.fix
