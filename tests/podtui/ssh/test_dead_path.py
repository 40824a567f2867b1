"""A network path that goes silent while TCP stays open (a NAT mapping dropped, a Wi-Fi roam, a
stuck middlebox) must be noticed, reported and reconnected, with the host key checked again.

paramiko's own keepalive wants no answer, and a transport over a frozen path stays "active" for
as long as TCP does: before podtui's answered keepalives, nothing was reported after 100 s and
each new request waited 10 s for "Timeout opening channel". OpenSSH with ServerAliveInterval=5
ServerAliveCountMax=3 gives up after about 20 s; podtui's defaults are the same.
"""

from __future__ import annotations

import queue
import time
import urllib.request

import pytest

from podtui.ssh.connection import ConnectOptions, SshConnection
from podtui.ssh.forwards import parse_forward
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.target import parse_ssh_target
from podtui.ssh.trust import HostKeyPolicy
from podtui.ssh.tunnel import Tunnel
from tests.testbed.relay import FreezableRelay
from tests.testbed.sshd import have_sshd

pytestmark = [pytest.mark.skipif(not have_sshd(), reason="needs openssh-server"),
              pytest.mark.timeout(120)]


def _wait_event(events: queue.Queue, kind: str, timeout: float) -> tuple[float, dict]:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            at, got, data = events.get(timeout=left)
        except queue.Empty:
            break
        if got == kind:
            return at, data
    raise AssertionError(f"no {kind!r} event within {timeout} s")


def _get(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
        return reply.read()


def _frozen_and_back(sshd, client_key, upstream, tmp_path, options: ConnectOptions):
    relay = FreezableRelay(sshd.port)
    target = parse_ssh_target(f"root@127.0.0.1:{relay.port}")
    policy = HostKeyPolicy(KnownHosts(tmp_path / "known_hosts"), target.alias, target.label,
                           fingerprints=(sshd.host_fingerprint,))
    events: queue.Queue = queue.Queue()
    tunnel = Tunnel(SshConnection(target, policy, options), [parse_forward(f"0:127.0.0.1:{upstream.port}")],
                    on_event=lambda kind, data: events.put((time.monotonic(), kind, data)))
    try:
        tunnel.start()
        port = tunnel.local_ports[0]
        assert _get(port) == b"ok"
        frozen_at = time.monotonic()
        relay.freeze()
        down_at, down = _wait_event(events, "down", 60)
        assert "keepalives" in down["reason"] and "silent" in down["reason"]
        relay.resume()                       # a new path exists (the old connection stays dead)
        up_at, up = _wait_event(events, "up", 60)
        assert up["fingerprint"] == sshd.host_fingerprint
        assert len(policy.outcomes) == 2     # the host key was checked again on the new path
        assert _get(port) == b"ok"
        return down_at - frozen_at, up_at - frozen_at
    finally:
        tunnel.stop()
        relay.close()


def test_a_frozen_path_is_reported_and_reconnected(sshd, client_key, upstream, tmp_path):
    options = ConnectOptions(identity=client_key, use_agent=False, keepalive_s=0.5, connect_timeout=3)
    down_s, up_s = _frozen_and_back(sshd, client_key, upstream, tmp_path, options)
    assert 1.0 <= down_s <= 5.0      # 3 unanswered keepalives at 0.5 s, not at the first silence
    assert up_s <= 10.0


def test_with_the_default_keepalive_a_frozen_path_is_back_within_60_s(sshd, client_key, upstream, tmp_path):
    options = ConnectOptions(identity=client_key, use_agent=False)
    down_s, up_s = _frozen_and_back(sshd, client_key, upstream, tmp_path, options)
    print(f"frozen path: reported after {down_s:.1f} s, reconnected after {up_s:.1f} s")
    assert 10.0 <= down_s <= 25.0    # 5 s x 3, like OpenSSH's ServerAliveInterval=5 ServerAliveCountMax=3
    assert up_s <= 60.0
