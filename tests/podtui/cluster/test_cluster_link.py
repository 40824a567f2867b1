"""`podtui cluster link` end to end on loopback, all real parts: three "pods", each a real sshd with its
own host key and a real `remote-agent daemon`; two backends run the real ggml-rpc-server, the server
runs the real llama-server --rpc over real OpenSSH links that its agent starts with the host keys
podtui pinned; podtui reaches every agent through its own verified SSH channel (`podtui hosts add
--fingerprint`). The test bed's FreezableRelay stands in for a network path that freezes."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests.testbed.cli import run_podtui, start_tunnel
from tests.testbed.llama import chat_completion
from tests.testbed.procs import free_port
from tests.testbed.relay import FreezableRelay
from tests.testbed.rpc import wait_until
from tests.testbed.rpc_pods import add_host, start_two_backend_cluster, stop_pods
from tests.testbed.sshd import SshServer, generate_key, have_sshd

pytestmark = [pytest.mark.skipif(not have_sshd(), reason="needs openssh-server"), pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def pods(llama_bin, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("rpc-pods")
    client_key = generate_key(root / "podtui_key")
    env = {**os.environ, "PODTUI_CONFIG_DIR": str(root / "cfg"), "PODTUI_STATE_DIR": str(root / "state"),
           "SSH_AUTH_SOCK": "", "HOME": str(root / "home")}
    started = start_two_backend_cluster(root, llama_bin, tiny_model, client_key, env)
    try:
        yield {"env": env, "a": started[0], "b": started[1], "server": started[2], "root": root,
               "key": client_key, "llama_bin": llama_bin}
    finally:
        stop_pods(started)


def link(pods, *extra: str):
    return run_podtui(pods["env"], "cluster", "link", "server", "backend-a", "backend-b", "--name", "c1", "--json",
                      *extra, timeout=80)


def links_of(pods) -> dict[str, dict]:
    return {item["name"]: item for item in pods["server"].status()["cluster"]["links"]}


def test_link_then_a_chat_completion_through_podtuis_tunnel(pods):
    started = time.monotonic()
    out = link(pods)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [item["state"] for item in result["links"]] == ["up", "up"]
    assert "PRIVATE KEY" not in out.stdout + out.stderr
    server = pods["server"].daemon
    server.wait_for_state({"ready"}, timeout=60)
    # the backends hold the cluster key for their RPC port only, and the server keeps its half 0600
    for pod in (pods["a"], pods["b"]):
        line = next(l for l in pod.sshd.authorized_keys.read_text().splitlines() if l.endswith("podtui-cluster"))
        assert line.startswith(f'restrict,port-forwarding,permitopen="127.0.0.1:{pod.daemon.env["APP_PORT"]}"')
    key_file = server.root / "state" / "links" / "cluster_key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    secret = key_file.read_text().splitlines()[1]  # a line of the key itself
    logs = [server.log_text(), *(p.read_text(errors="replace") for p in (pods["root"] / "state").rglob("*")
                                 if p.is_file())]
    assert not any(secret in text or "PRIVATE KEY" in text for text in logs)
    tunnel = start_tunnel(pods["env"], "server", "-L", f"0:127.0.0.1:{server.port}")
    try:
        answer = chat_completion(tunnel.local_url, api_key=server.api_key(), max_tokens=4)
        assert answer["choices"][0]["message"]["content"] is not None
    finally:
        tunnel.interrupt()
    status = json.loads(run_podtui(pods["env"], "cluster", "status", "c1", "--json").stdout)
    assert status["server"]["state"] == "ready" and {l["state"] for l in status["server"]["links"]} == {"up"}
    assert [b["state"] for b in status["backends"]] == ["ready", "ready"]
    assert [b["link"] for b in status["server"]["backends"]] == ["backend-a", "backend-b"]
    assert status["server"]["model"] and status["server"]["ctx"] > 0
    assert [b["memory_budgets_mib"] for b in status["backends"]] == [[400], [300]]
    listed = json.loads(run_podtui(pods["env"], "cluster", "list", "--json").stdout)
    assert [c["name"] for c in listed["clusters"]] == ["c1"]
    print(f"link + ready + chat in {time.monotonic() - started:.1f} s")


def test_the_links_come_back_with_a_restarted_server_agent_and_leave_no_ssh_behind(pods):
    assert link(pods).returncode == 0
    server = pods["server"].daemon
    key_file = str(server.root / "state" / "links" / "cluster_key")

    def link_processes() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and key_file in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
        return found

    assert len(link_processes()) == 2
    server.stop()
    assert link_processes() == []
    server.start()
    status = server.wait_for_state({"ready"}, timeout=60)
    assert [item["state"] for item in status["cluster"]["links"]] == ["up", "up"]
    assert len(link_processes()) == 2


def test_a_frozen_link_is_found_within_10_s_and_comes_back(pods):
    relay = FreezableRelay(pods["a"].sshd.port)
    try:
        out = link(pods, "--reach", f"backend-a=127.0.0.1:{relay.port}")
        assert out.returncode == 0, out.stderr
        server = pods["server"].daemon
        server.wait_for_state({"ready"}, timeout=60)
        relay.freeze()
        frozen = time.monotonic()
        wait_until(lambda: links_of(pods)["backend-a"]["state"] != "up", 12, "the frozen link noticed")
        detected = time.monotonic() - frozen
        assert detected <= 10.5, detected
        relay.resume()
        wait_until(lambda: links_of(pods)["backend-a"]["state"] == "up", 30, "the link back up")
        # ready once backend-a's sshd has dropped the frozen session that held ggml-rpc-server's one slot
        status = server.wait_for_state({"ready"}, timeout=40)
        assert status["cluster"]["links"][0]["restarts"] >= 1
        print(f"frozen link noticed after {detected:.1f} s")
    finally:
        assert link(pods).returncode == 0  # off the relay before it goes
        relay.close()


def test_a_backend_presenting_another_host_key_is_refused_and_sent_nothing(pods, tmp_path):
    b = pods["b"]
    impostor = SshServer(tmp_path / "impostor")  # another host key, and it would accept the cluster key
    impostor.authorized_keys = b.sshd.authorized_keys
    impostor.start()
    try:
        # no legitimate link to backend-b while we count: whatever reaches it now came through the impostor
        unlinked = run_podtui(pods["env"], "cluster", "unlink", "c1", "--json")
        assert unlinked.returncode == 0, unlinked.stderr
        assert not any(line.endswith("podtui-cluster") for line in b.sshd.authorized_keys.read_text().splitlines())
        time.sleep(1)
        accepted_before = b.engine_log().count("Accepted client connection")
        out = link(pods, "--reach", f"backend-b=127.0.0.1:{impostor.port}")
        assert out.returncode == 1, out.stderr
        assert "refused" in out.stderr and "host key" in out.stderr
        assert links_of(pods)["backend-b"]["state"] == "refused"
        assert "Accepted publickey" not in impostor.log_text()
        time.sleep(1)
        assert b.engine_log().count("Accepted client connection") == accepted_before, pods["server"].daemon.log_text()[-6000:]
    finally:
        impostor.stop()
    assert link(pods).returncode == 0  # the right address again: back to a working cluster
    pods["server"].daemon.wait_for_state({"ready"}, timeout=60)


def test_pods_of_different_llama_cpp_builds_are_not_linked(pods, tmp_path):
    """backend-c runs the same ggml-rpc-server, but its llama-server says another build; podtui reaches
    its agent through backend-b's sshd (another agent command)."""
    real = pods["llama_bin"]
    bin_dir = tmp_path / "other-build"
    bin_dir.mkdir()
    for binary in real.iterdir():
        if binary.name != "llama-server":
            (bin_dir / binary.name).symlink_to(binary)
    (bin_dir / "llama-server").write_text(
        f'#!/bin/sh\n[ "$1" = --version ] && {{ echo "version: 9999 (deadbee)"; exit 0; }}\nexec {real}/llama-server "$@"\n')
    (bin_dir / "llama-server").chmod(0o755)
    from tests.testbed.agent_daemon import DaemonProcess
    from tests.testbed.rpc import backend_env
    (tmp_path / "c").mkdir()
    daemon = DaemonProcess(tmp_path / "c", bin_dir, env=backend_env(free_port())).start()
    try:
        add_host(pods["env"], pods["b"], pods["key"], name="backend-c",
                 bridge=f"{sys.executable} -m remote_agent rpc --socket {daemon.socket}")
        keys_before = pods["a"].sshd.authorized_keys.read_text()
        out = run_podtui(pods["env"], "cluster", "link", "server", "backend-a", "backend-c", "--json", timeout=60)
        assert out.returncode == 1
        error = json.loads(out.stderr.strip().splitlines()[-1])
        assert "different llama.cpp builds" in error["error"] and "same image" in error["fix"]
        assert pods["a"].sshd.authorized_keys.read_text() == keys_before  # nothing was authorized
    finally:
        daemon.stop()


def test_the_backends_app_mem_becomes_the_servers_fit_budget_per_device(pods):
    assert link(pods).returncode == 0
    server = pods["server"].daemon
    server.wait_for_state({"ready"}, timeout=60)
    with server.client() as client:
        fit = client.result("fit.search", {"ctx_max": 2048})
    assert [d["budget_mib"] for d in fit["devices"]] == [400, 300]
    assert fit["status"] == "fits"
    server.wait_for_state({"ready"}, timeout=60)


def test_direct_mode_hands_the_server_the_backends_addresses_and_unlink_takes_them_back(pods):
    """No links: the server's agent gets each backend's own bind:port and APP_MEM (cluster.direct) over
    podtui's verified channel and serves over them; unlink sends it back to its APP_RPC_BACKENDS."""
    server = pods["server"]
    out = link(pods, "--direct")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    direct = [f"127.0.0.1:{p.daemon.env['APP_PORT']}" for p in (pods["a"], pods["b"])]
    assert result["endpoints"] == direct and result["links"] == []
    status = server.daemon.wait_for_state({"ready"}, timeout=60,
                                          pred=lambda s: [b["endpoint"] for b in s["cluster"]["backends"]] == direct)
    assert status["cluster"]["direct"] is True and status["cluster"]["links"] == []
    answer = chat_completion(f"http://127.0.0.1:{server.daemon.port}", api_key=server.daemon.api_key(), max_tokens=4)
    assert answer["choices"][0]["message"]["content"] is not None
    out = run_podtui(pods["env"], "cluster", "unlink", "c1", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["unlinked"] == {"server": "cluster.direct"}
    assert server.status()["cluster"]["direct"] is False
    assert link(pods).returncode == 0   # links again, on the link ports
    server.daemon.wait_for_state({"ready"}, timeout=60)


def test_bad_input_is_a_usage_error_naming_the_fix(pods):
    out = link(pods, "--reach", "backend-a")
    assert out.returncode == 2 and "BACKEND=HOST:PORT" in out.stderr
    out = run_podtui(pods["env"], "cluster", "status", "nope", "--json")
    assert out.returncode == 2 and json.loads(out.stderr.strip().splitlines()[-1])["fix"] == "see `podtui cluster list`"
    out = run_podtui(pods["env"], "cluster", "link", "server", "backend-a", "--json")
    assert out.returncode == 1 and "expects 2 backend(s)" in out.stderr


def test_a_backend_down_behind_an_up_link_is_named_by_its_link_not_taken_for_another_build(pods):
    """Through an SSH link a dead ggml-rpc-server looks, on the wire, like a server of another protocol
    generation (the link accepts, then closes): the server names the backend by its link instead."""
    assert link(pods).returncode == 0
    server = pods["server"].daemon
    server.wait_for_state({"ready"}, timeout=60)
    backend = pods["b"].daemon
    backend.stop()   # its agent and its ggml-rpc-server; its sshd, and so the link, stay up
    try:
        status = server.wait_for_state({"paused"}, timeout=40)
        error = status["last_error"]
        assert error["kind"] == "backend_unreachable", error
        assert "backend backend-b (its link at 127.0.0.1:" in error["message"] and "is up)" in error["message"]
        assert links_of(pods)["backend-b"]["state"] == "up"
    finally:
        backend.start()
    server.wait_for_state({"ready"}, timeout=60)


def test_cluster_status_names_a_backend_whose_rpc_server_restarted_within_a_second(pods):
    """The handshake cannot name a backend its agent brought back at once; its link's session saw the
    new ggml-rpc-server, and `cluster status` says so beside the server's last error."""
    assert link(pods).returncode == 0
    pods["server"].daemon.wait_for_state({"ready"}, timeout=60)
    backend = pods["a"]   # rpc_pods.Pod: status() asks its agent
    old_pid = backend.status()["pid"]
    os.kill(old_pid, 9)   # its agent restarts it at once
    wait_until(lambda: backend.status()["pid"] not in (None, old_pid), 20, "backend-a's rpc server restarted")
    wait_until(lambda: links_of(pods)["backend-a"].get("last_backend_restart"), 15, "the link saw the restart")
    out = run_podtui(pods["env"], "cluster", "status", "c1")
    assert out.returncode == 0, out.stderr
    assert "backend backend-a: its ggml-rpc-server restarted" in out.stdout, out.stdout
    pods["server"].daemon.wait_for_state({"ready"}, timeout=60)
