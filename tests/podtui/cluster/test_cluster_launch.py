"""`podtui cluster launch | stop | terminate` against the Runpod REST double (a DOUBLE of Runpod's API,
following the published spec; it checks every body against it), whose pods are real: each "pod" the
double hands out is a real sshd (its own host key, printed in the pod log by the real `remote-agent
boot --dry-run`) with a real `remote-agent daemon` behind it — two backends running ggml-rpc-server and a
server running llama-server --rpc. The daemons are started here with the roles the launch asks for
(the double runs no image, so the env it was given is checked in its create requests instead)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.testbed.boot_logs import real_boot_log
from tests.testbed.cli import run_podtui
from tests.testbed.procs import free_port
from tests.testbed.rpc_pods import start_backend, start_server, stop_pods
from tests.testbed.sshd import generate_key, have_sshd

pytestmark = [pytest.mark.skipif(not have_sshd(), reason="needs openssh-server"), pytest.mark.timeout(120)]


def test_launch_links_two_backends_and_a_server_then_stop_and_terminate_them(
        runpod_env, runpod_double, llama_bin, tiny_model, tmp_path):
    home_ssh = Path(runpod_env["HOME"]) / ".ssh"
    home_ssh.mkdir(parents=True)
    key = generate_key(home_ssh / "id_ed25519")  # podtui's default identity, as a user's would be
    first = free_port()
    environment = f"PATH={Path(sys.executable).parent}:/usr/bin:/bin"
    pods = []
    try:
        for name in ("b1", "b2"):
            pods.append(start_backend(tmp_path, name, llama_bin, key, APP_MEM="500"))
        pods.append(start_server(tmp_path, llama_bin, tiny_model, [first, first + 1], key))
        for pod in pods:  # `remote-agent rpc` on that pod finds its own daemon, as in the image
            pod.sshd.stop()
            pod.sshd.extra_config += f"\nSetEnv SHLVL=1 REMOTE_AGENT_SOCKET={pod.daemon.socket} {environment}"
            pod.sshd.start()
        order = iter(pods)
        current = [next(order)]
        runpod_double.ssh_host, runpod_double.ssh_port = "127.0.0.1", current[0].sshd.port

        def boot_log(pod_id: str) -> str:  # the double's pods go RUNNING in launch order
            pod = current[0]
            following = next(order, None)
            if following is not None:
                current[0] = following
                runpod_double.ssh_port = following.sshd.port
            return real_boot_log(pod_id, pod.sshd.host_key, tmp_path / f"boot-{pod_id}")

        runpod_double.boot_log = boot_log
        token = "hf_cluster_secret_77"
        out = run_podtui({**runpod_env, "HF_TOKEN": token}, "cluster", "launch", "--backends", "2", "--gpu",
                         "NVIDIA A40", "--model", "org/repo:Q4_K_M", "--name", "t", "--app-mem", "500",
                         "--first-link-port", str(first), "--with-hf-token", "--log-timeout", "20", "--json",
                         timeout=110)
        assert out.returncode == 0, out.stderr
        assert token not in out.stdout + out.stderr
        result = json.loads(out.stdout)
        assert [link["state"] for link in result["links"]] == ["up", "up"]
        created = [r["body"] for r in runpod_double.requests_to("POST", "/v2/pods")]
        assert [b["env"]["APP_MODE"] for b in created] == ["backend", "backend", "server"]
        assert created[2]["env"]["APP_RPC_BACKENDS"] == f"127.0.0.1:{first},127.0.0.1:{first + 1}"
        assert created[2]["env"]["MODEL"] == "org/repo:Q4_K_M" and "MODEL" not in created[0]["env"]
        assert all(b["env"]["APP_MEM"] == "500" for b in created[:2])
        # the gated MODEL's token goes to the server only: a backend downloads nothing
        assert created[2]["env"]["HF_TOKEN"] == token and all("HF_TOKEN" not in b["env"] for b in created[:2])
        assert all(not any("50052" in port for port in b["ports"]) for b in created)  # RPC never published
        pods[2].daemon.wait_for_state({"ready"}, timeout=60)

        out = run_podtui(runpod_env, "cluster", "stop", "t", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["stop"] == result["pods"][::-1][:1] + result["pods"][:2]
        out = run_podtui(runpod_env, "cluster", "terminate", "t", stdin="n\n")
        assert out.returncode == 2 and "was not terminated" in out.stderr
        out = run_podtui(runpod_env, "cluster", "terminate", "t", "--yes", "--json")
        assert out.returncode == 0 and sorted(json.loads(out.stdout)["terminate"]) == sorted(result["pods"])
        assert json.loads(run_podtui(runpod_env, "cluster", "list", "--json").stdout)["clusters"] == []
    finally:
        stop_pods(pods)
