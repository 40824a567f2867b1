"""`podtui tunnel` end to end, what it reads and prints: pod logs with noise and wrapped lines,
IPv6 forwards whose printed URL and OpenSSH command work, public binds warned about."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.podtui.commands.test_tunnel_cli import get, target
from tests.podtui.ssh.test_hostkeys import NVIDIA_NOISE, hard_wrap, interleave_in_block
from tests.testbed.boot_logs import real_boot_log
from tests.testbed.cli import PODTUI, CountingUpstream, run_podtui, start_tunnel
from tests.testbed.procs import stop_process
from tests.testbed.sshd import SshServer, have_sshd

pytestmark = [pytest.mark.skipif(not have_sshd(), reason="needs openssh-server"),
              pytest.mark.timeout(120)]


@pytest.fixture
def pod_with_log(runpod_double, sshd, tmp_path):
    """add(shape): a RUNNING pod in the double whose port 22 is the test-bed sshd and whose log is a
    real boot's, passed through shape (noise, wrapping) first."""
    runpod_double.ssh_host, runpod_double.ssh_port = "127.0.0.1", sshd.port

    def add(shape):
        runpod_double.boot_log = lambda pod_id: shape(real_boot_log(pod_id, sshd.host_key, tmp_path / f"boot-{pod_id}"))
        return runpod_double.add_pod("chat-pod")
    return add


def test_a_pod_line_printed_by_another_process_inside_the_block_does_not_stop_the_tunnel(
        pod_with_log, runpod_env, sshd, client_key, upstream, tunnels):
    pod = pod_with_log(lambda log: interleave_in_block(log, NVIDIA_NOISE))
    env = {**runpod_env, "PODTUI_POD_LOG_TIMEOUT_S": "10"}
    tunnel = start_tunnel(env, pod["id"], "-i", str(client_key), "-L", f"0:127.0.0.1:{upstream.port}")
    tunnels.append(tunnel)
    assert tunnel.info["host_key"]["fingerprint"] == sshd.host_fingerprint
    assert tunnel.info["host_key"]["verified"] is True
    assert get(tunnel.local_url + "/") == b"ok"
    assert tunnel.interrupt() == 0


def test_a_pod_log_wrapped_at_80_columns_says_damaged_at_once_and_the_fingerprint_gets_through(
        pod_with_log, runpod_env, sshd, client_key, upstream, tunnels):
    pod = pod_with_log(hard_wrap)
    env = {**runpod_env, "PODTUI_POD_LOG_TIMEOUT_S": "20"}
    time.sleep(0.3)  # let sshd log the fixture's readiness probe
    connections_before = sshd.log_text().count("Connection from")
    started = time.monotonic()
    out = run_podtui(env, "tunnel", pod["id"], "--json", "-i", str(client_key), "-L", f"0:127.0.0.1:{upstream.port}")
    assert out.returncode == 3, out.stderr
    assert time.monotonic() - started < 15   # refused at once: a damaged block is never waited out
    assert "damaged" in out.stderr and "wrapped or cut" in out.stderr
    assert "--fingerprint SHA256:" in out.stderr and "podtui hostkey TARGET --pin SHA256:" in out.stderr
    assert "podtui's image" not in out.stderr and out.stdout == ""
    time.sleep(0.2)
    assert sshd.log_text().count("Connection from") == connections_before   # nothing connected
    # The fix it gives works: the fingerprint, pasted, stands in for the unreadable block.
    tunnel = start_tunnel(env, pod["id"], "-i", str(client_key), "-L", f"0:127.0.0.1:{upstream.port}",
                          "--fingerprint", sshd.host_fingerprint)
    tunnels.append(tunnel)
    assert tunnel.info["host_key"] == {"type": "ssh-ed25519", "fingerprint": sshd.host_fingerprint,
                                       "verified": True, "newly_pinned": True}
    assert tunnel.info["known_hosts_alias"] == f"podtui-{pod['id']}"
    assert get(tunnel.local_url + "/") == b"ok"
    assert tunnel.interrupt() == 0


# -- issue 15: what is printed for IPv6 and public binds ------------------------------------------

def have_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def start_text_tunnel(env: dict, target: str, *args: str) -> tuple[list[str], str, int]:
    """`podtui tunnel` without --json: its stdout up to "Ctrl-C to stop.", then Ctrl-C; returns
    (stdout lines, stderr, exit code)."""
    proc = subprocess.Popen([PODTUI, "tunnel", target, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C"):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        return lines, err, proc.returncode
    finally:
        stop_process(proc)


def run_printed_openssh(command: str, env: dict, url: str, timeout: float = 20) -> bytes:
    """Run the printed OpenSSH command (plus BatchMode and no user config) and GET url through the
    forward it opens; returns the body. Fails when ssh rejects the command or exits."""
    argv = shlex.split(command)
    ssh = [argv[0], "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
           "-o", "GlobalKnownHostsFile=/dev/null", *argv[1:]]
    proc = subprocess.Popen(ssh, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"ssh exited {proc.returncode}: {proc.stderr.read()}")
            try:
                return get(url, timeout=5)
            except OSError:
                assert time.monotonic() < deadline, "the printed ssh -L never served the URL"
                time.sleep(0.1)
    finally:
        stop_process(proc)


@pytest.mark.skipif(not have_ipv6_loopback(), reason="this machine has no ::1")
def test_an_ipv6_bind_prints_a_url_and_an_openssh_command_that_work(sshd, client_key, podtui_env, upstream, tunnels):
    forward = f"[::1]:0:127.0.0.1:{upstream.port}"
    tunnel = start_tunnel(podtui_env, target(sshd), "-L", forward, "-i", str(client_key),
                          "--fingerprint", sshd.host_fingerprint)
    tunnels.append(tunnel)
    port, info = tunnel.local_port, tunnel.info
    assert info["forwards"] == [{"local": f"[::1]:{port}", "remote": f"127.0.0.1:{upstream.port}"}]
    assert info["base_url"] == f"http://[::1]:{port}/v1"
    assert get(info["base_url"] + "/models") == b"ok"   # the printed URL, as printed
    assert f"-L '[::1]:{port}:127.0.0.1:{upstream.port}'" in info["openssh_command"]
    assert tunnel.interrupt() == 0
    # The real ssh accepts the printed command and its forward serves the same URL.
    assert run_printed_openssh(info["openssh_command"], podtui_env, info["base_url"] + "/models") == b"ok"
    # The text report says the same.
    lines, err, code = start_text_tunnel(podtui_env, target(sshd), "-L", forward, "-i", str(client_key))
    assert code == 0, err
    forward_line = next(line for line in lines if line.startswith("  forward"))
    local = forward_line.split()[1]
    assert local.startswith("[::1]:") and forward_line.endswith(f"-> 127.0.0.1:{upstream.port} on the server")
    assert f"  base URL  http://{local}/v1" in lines
    assert any(f"-L '{local}:127.0.0.1:{upstream.port}'" in line for line in lines if "OpenSSH" in line)
    assert "WARNING" not in err   # loopback: nothing to warn about


def can_make_network_namespace() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "-n", "true"], stderr=subprocess.DEVNULL).returncode == 0


PUBLIC_BINDS = ["0.0.0.0", "*", "", "[::]"]


def public_bind_probe() -> None:
    """Run inside a fresh network namespace (only a loopback interface, so `all interfaces` is
    loopback and nothing is exposed): a real sshd and upstream, then `podtui tunnel` once per bind
    form in PUBLIC_BINDS with --json, and once with `*` as text. Prints the results as JSON."""
    workdir, client_key = Path(sys.argv[1]), sys.argv[2]
    env = json.loads(sys.stdin.read())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    server = SshServer(workdir / "sshd")
    server.authorize(Path(f"{client_key}.pub"))
    server.start()
    upstream = CountingUpstream()
    ssh_target = f"ssh://root@127.0.0.1:{server.port}"
    common = ("-i", client_key, "--fingerprint", server.host_fingerprint)
    results = {"ipv6": have_ipv6_loopback(), "json": {}}
    try:
        for bind in PUBLIC_BINDS if results["ipv6"] else PUBLIC_BINDS[:-1]:
            tunnel = start_tunnel(env, ssh_target, "-L", f"{bind}:0:127.0.0.1:{upstream.port}", *common)
            try:
                body = get(tunnel.info["base_url"] + "/models").decode()
                code = tunnel.interrupt()
            finally:
                stop_process(tunnel.proc)
            time.sleep(0.2)   # the stderr reader catches up
            results["json"][bind] = {"info": tunnel.info, "stderr": tunnel.stderr_lines, "body": body, "exit": code}
        lines, err, code = start_text_tunnel(env, ssh_target, "-L", f"*:0:127.0.0.1:{upstream.port}", *common)
        results["text"] = {"stdout": lines, "stderr": err, "exit": code}
    finally:
        upstream.close()
        server.stop()
    print(json.dumps(results))


@pytest.mark.skipif(not can_make_network_namespace(), reason="needs root, unshare and ip for a network namespace")
def test_binding_all_interfaces_warns_that_the_api_is_reachable_and_keeps_a_loopback_url(
        podtui_env, client_key, tmp_path):
    repo = Path(__file__).resolve().parents[3]
    probe = "from tests.podtui.commands.test_tunnel_output_cli import public_bind_probe; public_bind_probe()"
    out = subprocess.run(["unshare", "-n", sys.executable, "-c", probe, str(tmp_path / "ns"), str(client_key)],
                         cwd=repo, input=json.dumps(podtui_env), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert set(results["json"]) == set(PUBLIC_BINDS if results["ipv6"] else PUBLIC_BINDS[:-1])
    for bind, run in results["json"].items():
        port = int(run["info"]["forwards"][0]["local"].rsplit(":", 1)[1])
        loopback = "[::1]" if bind == "[::]" else "127.0.0.1"
        assert run["info"]["base_url"] == f"http://{loopback}:{port}/v1", bind
        assert run["body"] == "ok" and run["exit"] == 0, bind
        events = [json.loads(line) for line in run["stderr"]]   # --json: stderr is JSON lines only
        warnings = [e for e in events if e["event"] == "warning"]
        assert [w["kind"] for w in warnings] == ["public_bind"], bind
        warning = warnings[0]
        assert warning["local"] == f"{'[::]' if bind == '[::]' else '0.0.0.0'}:{port}"
        assert "listens on all interfaces" in warning["message"]
        assert "reachable" in warning["message"] and "anyone who can reach this machine" in warning["message"]
        remote = run["info"]["forwards"][0]["remote"]
        assert warning["fix"] == f"drop the bind address (-L 0:{remote}) or bind 127.0.0.1 (-L 127.0.0.1:0:{remote})"
    text = results["text"]
    assert text["exit"] == 0
    assert "WARNING:" in text["stderr"] and "listens on all interfaces" in text["stderr"]
    assert "to keep it local: drop the bind address" in text["stderr"] and "127.0.0.1" in text["stderr"]
    assert any(line.startswith("  base URL  http://127.0.0.1:") for line in text["stdout"])
