"""`podtui hostkey`: pin by fingerprint after key exchange only, pin from a pod log, show."""

from __future__ import annotations

import json

import pytest

from podtui.ssh.hostkeys import HostKey, format_block
from tests.testbed.cli import run_podtui, start_tunnel
from tests.testbed.sshd import SshServer, have_sshd

pytestmark = [pytest.mark.skipif(not have_sshd(), reason="needs openssh-server"),
              pytest.mark.timeout(60)]


def server_key(server: SshServer) -> HostKey:
    key_type, blob = server.host_public_key.split()
    return HostKey.from_base64(key_type, blob)


def test_pin_checks_the_presented_key_and_never_logs_in(sshd, podtui_env, tmp_path):
    target = f"root@127.0.0.1:{sshd.port}"
    wrong = SshServer(tmp_path / "other").host_fingerprint
    out = run_podtui(podtui_env, "hostkey", target, "--pin", wrong)
    assert out.returncode == 3 and "nothing was pinned" in out.stderr
    out = run_podtui(podtui_env, "hostkey", target, "--pin", sshd.host_fingerprint, "--json")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["alias"] == f"[127.0.0.1]:{sshd.port}"
    assert shown["pins"] == [{"type": "ssh-ed25519", "fingerprint": sshd.host_fingerprint, "verified": True}]
    assert "Accepted publickey" not in sshd.log_text()


def test_pin_from_a_noisy_pod_log_then_tunnel_without_fingerprint(sshd, client_key, podtui_env, upstream,
                                                                  tunnels, tmp_path):
    log = tmp_path / "pod.log"
    block = format_block("pod-1", [server_key(sshd)])
    log.write_text("boot...\r\n" + "".join(f"\x1b[2m2026-11-22 INFO\x1b[0m {l}\r\n" for l in block.splitlines()))
    target = f"root@127.0.0.1:{sshd.port}"
    out = run_podtui(podtui_env, "hostkey", target, "--from-log", str(log))
    assert out.returncode == 0, out.stderr
    assert "pod-1" in out.stdout and sshd.host_fingerprint in out.stdout and "verified" in out.stdout
    tunnel = start_tunnel(podtui_env, target, "-L", f"0:127.0.0.1:{upstream.port}", "-i", str(client_key))
    tunnels.append(tunnel)
    assert tunnel.info["host_key"]["verified"] is True and not tunnel.info["host_key"]["newly_pinned"]


def test_from_log_without_a_block_exits_3_and_show_lists_nothing(podtui_env, tmp_path):
    log = tmp_path / "pod.log"
    log.write_text("no keys here\n")
    out = run_podtui(podtui_env, "hostkey", "root@10.9.9.9:2222", "--from-log", str(log))
    assert out.returncode == 3 and "no complete host-key block" in out.stderr
    out = run_podtui(podtui_env, "hostkey", "root@10.9.9.9:2222", "--from-log", "-", stdin="nothing")
    assert out.returncode == 3
    out = run_podtui(podtui_env, "hostkey", "root@10.9.9.9:2222")
    assert out.returncode == 0 and "no pins" in out.stdout


def test_from_log_for_a_bare_name_needs_the_block_of_that_pod(podtui_env, tmp_path):
    """Without a Runpod key a bare word cannot be checked against the API: the block's own pod line
    must name it, or a log from another pod would be pinned under the wrong name."""
    env = {k: v for k, v in podtui_env.items() if k != "RUNPOD_API_KEY"}
    log = tmp_path / "pod.log"
    log.write_text(format_block("abc123", [HostKey.from_base64(*SshServer(tmp_path / "k").host_public_key.split())]))
    out = run_podtui(env, "hostkey", "zzz999", "--from-log", str(log))
    assert out.returncode == 3, out.stderr
    assert "printed by pod 'abc123'" in out.stderr and "nothing was pinned" in out.stderr
    assert "RUNPOD_API_KEY" in out.stderr                     # the fix names the way to check it
    assert "no pins" in run_podtui(env, "hostkey", "zzz999").stdout
    out = run_podtui(env, "hostkey", "abc123", "--from-log", str(log))
    assert out.returncode == 0 and "block printed by pod abc123" in out.stdout, out.stderr


def test_show_pin_and_from_log_are_alternatives(podtui_env, tmp_path):
    out = run_podtui(podtui_env, "hostkey", "root@10.9.9.9:2222", "--show", "--pin", "SHA256:" + "A" * 43)
    assert out.returncode == 2 and "--show and --pin both given" in out.stderr


def test_a_bare_name_that_is_nothing_says_so(podtui_env):
    env = {k: v for k, v in podtui_env.items() if k != "RUNPOD_API_KEY"}
    out = run_podtui(env, "tunnel", "nopod-typo", "--accept-unverified", timeout=60)
    assert out.returncode == 4, out.stderr
    assert "'nopod-typo' is not a Runpod pod" in out.stderr and "podtui pods" in out.stderr
