"""Pod ids through the real `podtui` entry point: `tunnel POD_ID`, `hostkey POD_ID` resolve the pod
through the Runpod REST v2 double (PODTUI_RUNPOD_API_URL), read its printed host keys from the
logs endpoint, pin them, and connect directly to the pod's sshd (the test-bed sshd)."""

from __future__ import annotations

import json
import os

import pytest

from tests.testbed.boot_logs import real_boot_log
from tests.testbed.cli import run_podtui
from tests.testbed.cli import CountingUpstream, start_tunnel
from tests.testbed.llama import chat_completion
from tests.testbed.procs import stop_process
from tests.testbed.sshd import have_sshd

pytestmark = [pytest.mark.skipif(not have_sshd(), reason="needs openssh-server"), pytest.mark.timeout(120)]


@pytest.fixture
def pod_on_sshd(runpod_double, sshd, tmp_path):
    """A RUNNING pod in the double whose port 22 is the test-bed sshd and whose log is a real boot's."""
    runpod_double.ssh_host, runpod_double.ssh_port = "127.0.0.1", sshd.port
    runpod_double.boot_log = lambda pod_id: real_boot_log(pod_id, sshd.host_key, tmp_path / f"boot-{pod_id}")
    return runpod_double.add_pod("chat-pod", env={"MODEL": "tiny", "PORT": "5002"})


def test_tunnel_by_pod_id_pins_the_printed_keys_and_serves_a_chat(pod_on_sshd, runpod_env, sshd, client_key,
                                                                   llama_server):
    env = {**runpod_env, "PODTUI_POD_LOG_TIMEOUT_S": "10"}
    tunnel = start_tunnel(env, pod_on_sshd["id"], "-i", str(client_key), "-L", f"0:127.0.0.1:{llama_server.port}")
    try:
        info = tunnel.info
        assert info["known_hosts_alias"] == f"podtui-{pod_on_sshd['id']}"
        assert info["host_key"] == {"type": "ssh-ed25519", "fingerprint": sshd.host_fingerprint,
                                    "verified": True, "newly_pinned": False}  # pinned from the log first
        assert f"pod {pod_on_sshd['id']}" in info["target"]
        reply = chat_completion(tunnel.local_url)
        assert reply["choices"][0]["message"]["content"] is not None
        assert tunnel.interrupt() == 0
    finally:
        stop_process(tunnel.proc)
    # by name too, with the pin already there
    shown = run_podtui(env, "hostkey", "chat-pod", "--json")
    assert shown.returncode == 0, shown.stderr
    pins = json.loads(shown.stdout)["pins"]
    assert [(p["fingerprint"], p["verified"]) for p in pins] == [(sshd.host_fingerprint, True)]


def test_hostkey_by_pod_id_reads_the_log_through_the_api(pod_on_sshd, runpod_env, runpod_double, sshd):
    pod_id = pod_on_sshd["id"]
    out = run_podtui(runpod_env, "hostkey", pod_id, "--json")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["alias"] == f"podtui-{pod_id}"
    assert [(p["fingerprint"], p["verified"]) for p in shown["pins"]] == [(sshd.host_fingerprint, True)]
    assert len(runpod_double.requests_to("GET", f"/v2/pods/{pod_id}/logs")) >= 1
    reads = len(runpod_double.requests_to("GET", f"/v2/pods/{pod_id}/logs"))
    assert run_podtui(runpod_env, "hostkey", pod_id).returncode == 0
    assert len(runpod_double.requests_to("GET", f"/v2/pods/{pod_id}/logs")) == reads  # pinned: no re-read


def test_hostkey_from_log_checks_the_pod_line(pod_on_sshd, runpod_env, sshd, tmp_path):
    pod_id = pod_on_sshd["id"]
    foreign = tmp_path / "other.log"
    foreign.write_text(real_boot_log("someotherpod", sshd.host_key, tmp_path / "other-boot"))
    out = run_podtui(runpod_env, "hostkey", pod_id, "--from-log", str(foreign))
    assert out.returncode == 3 and "printed by pod 'someotherpod'" in out.stderr and pod_id in out.stderr
    shown = json.loads(run_podtui(runpod_env, "hostkey", "--json", pod_id, "--from-log", "-",
                                  stdin=real_boot_log(pod_id, sshd.host_key, tmp_path / "own")).stdout)
    assert "pinned from the log" in shown["action"]
    assert [p["fingerprint"] for p in shown["pins"]] == [sshd.host_fingerprint]


def test_a_pod_whose_log_never_shows_the_block_is_refused_without_connecting(runpod_double, runpod_env,
                                                                            client_key):
    upstream = CountingUpstream()  # plays the pod's port 22: counts every TCP connection
    try:
        runpod_double.ssh_host, runpod_double.ssh_port = "127.0.0.1", upstream.port
        runpod_double.boot_log = lambda pod_id: "booting…\nno keys printed here\n"
        pod = runpod_double.add_pod("silent")
        env = {**runpod_env, "PODTUI_POD_LOG_TIMEOUT_S": "1"}
        out = run_podtui(env, "tunnel", pod["id"], "--json", "-i", str(client_key), "-L", "0:127.0.0.1:9")
        assert out.returncode == 3, out.stderr
        assert "showed no host-key block" in out.stderr and "nothing connected" in out.stderr
        assert out.stdout == "" and upstream.connections == 0
        agent = run_podtui(env, "agent", pod["id"], "-i", str(client_key), "status")
        assert agent.returncode == 3 and upstream.connections == 0
    finally:
        upstream.close()


def test_a_readable_config_holding_the_key_is_warned_about_by_pod_sessions(pod_on_sshd, runpod_env):
    """Not only `podtui pods`: any verb that reads the key from the config says the file is exposed."""
    env = {k: v for k, v in runpod_env.items() if k != "RUNPOD_API_KEY"}
    config = f"{env['PODTUI_CONFIG_DIR']}/config.toml"
    os.makedirs(env["PODTUI_CONFIG_DIR"], exist_ok=True)
    with open(config, "w") as f:
        f.write(f'[runpod]\napi_key = "{runpod_env["RUNPOD_API_KEY"]}"\n')
    os.chmod(config, 0o644)
    shown = run_podtui(env, "hostkey", "chat-pod", "--json")
    assert shown.returncode == 0, shown.stderr
    assert "readable by other users" in shown.stderr and "chmod 600" in shown.stderr
    assert runpod_env["RUNPOD_API_KEY"] not in shown.stderr + shown.stdout
