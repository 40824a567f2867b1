"""`podtui cluster launch --instant` against the Runpod REST double's `/v2/clusters` (a DOUBLE of Runpod's
API that follows the published spec and checks every body against it: tests/testbed/runpod_clusters.py),
whose member pods are real: each "member" is a real sshd (its own host key, printed in the pod's log by
the real `remote-agent boot --dry-run`) with a real `remote-agent daemon` in APP_MODE=rank behind it.

The double runs no image, so the daemons are started here with the env the create request carries plus
what Runpod sets per member (NODE_RANK, NODE_ADDR, NUM_NODES), and the create body is checked instead.
On loopback every node's overlay address is 127.0.0.1 (the double's `cluster_ip`), so backends differ by
their APP_PORT and sshd port."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from podtui.errors import PodtuiError
from tests.testbed.boot_logs import real_boot_log
from tests.testbed.cli import run_podtui
from tests.testbed.llama import chat_completion
from tests.testbed.procs import free_port
from tests.testbed.rpc import FAST_SERVER_FLAGS
from tests.testbed.rpc_pods import BACKEND_SSHD_CONFIG, start_pod, stop_pods
from tests.testbed.sshd import generate_key, have_sshd

pytestmark = [pytest.mark.skipif(not have_sshd(), reason="needs openssh-server"), pytest.mark.timeout(120)]


def _members(tmp_path, llama_bin, model, runpod_env, runpod_double, count: int, **shared: str) -> list:
    """count real members (rank 0 the server), each sshd serving its own daemon's `remote-agent rpc`, and
    the double wired to them: member rank r's ssh.direct is pods[r]'s sshd, its log pods[r]'s host key."""
    home_ssh = Path(runpod_env["HOME"]) / ".ssh"
    home_ssh.mkdir(parents=True)
    key = generate_key(home_ssh / "id_ed25519")  # podtui's default identity, as a user's would be
    env = {"APP_MODE": "rank", "NUM_NODES": str(count), "NODE_ADDR": "127.0.0.1", "PRIMARY_ADDR": "127.0.0.1",
           "MODEL": str(model), "CTX": "1024", **shared}
    path = f"PATH={Path(sys.executable).parent}:/usr/bin:/bin"
    pods = []
    for rank in range(count):
        mine = {**env, "NODE_RANK": str(rank), **({"APP_PORT": str(free_port())} if rank else {})}
        args = FAST_SERVER_FLAGS if rank == 0 else ["--restart-backoff", "1"]
        pod = start_pod(tmp_path, f"rank{rank}", llama_bin, mine, list(args), key,
                        sshd_config=BACKEND_SSHD_CONFIG if rank else "")
        pod.sshd.stop()  # `remote-agent rpc` on that pod finds its own daemon, as in the image
        pod.sshd.extra_config += f"\nSetEnv SHLVL=1 REMOTE_AGENT_SOCKET={pod.daemon.socket} {path}"
        pod.sshd.start()
        pods.append(pod)
    runpod_double.cluster_ip = lambda rank: "127.0.0.1"
    runpod_double.cluster_ssh = lambda rank: ("127.0.0.1", pods[rank].sshd.port)
    runpod_double.boot_log = lambda pod_id: real_boot_log(
        pod_id, pods[runpod_double.pods[pod_id]["cluster"]["rank"]].sshd.host_key, tmp_path / f"boot-{pod_id}")
    return pods


def test_instant_direct_launch_serves_a_chat_then_stop_is_refused_and_terminate_deletes_the_cluster(
        runpod_env, runpod_double, provider, llama_bin, tiny_model, tmp_path):
    pods = []
    try:
        pods = _members(tmp_path, llama_bin, tiny_model, runpod_env, runpod_double, 3, APP_BIND="NODE_ADDR")
        out = run_podtui(runpod_env, "cluster", "launch", "--instant", "--direct", "--backends", "2", "--gpu",
                         "NVIDIA A40", "--model", "org/repo:Q4_K_M", "--name", "ic", "--app-mem", "500",
                         "--log-timeout", "20", "--json", timeout=110)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["kind"] == "instant" and result["price_per_hr"] == 1.32  # 3 pods × 1 A40 at $0.44/h
        assert '"phase": "price"' in out.stderr and "$1.32/hr for the whole cluster" in out.stderr
        members = runpod_double.members_of(result["cluster_id"])
        assert [result["server"], *result["backends"]] == [p["id"] for p in members]
        assert result["endpoints"] == [f"127.0.0.1:{pod.daemon.env['APP_PORT']}" for pod in pods[1:]]
        body = runpod_double.requests_to("POST", "/v2/clusters")[0]["body"]
        assert body["type"] == "APPLICATION" and body["compute"] == {
            "gpuTypeId": "NVIDIA A40", "gpuCountPerPod": 1, "podCount": 3}
        assert body["ports"] == ["22/tcp"] and body["startSsh"] is True and body["startJupyter"] is False
        assert {k: body["env"][k] for k in ("APP_MODE", "APP_BIND", "APP_MEM", "MODEL")} == {
            "APP_MODE": "rank", "APP_BIND": "NODE_ADDR", "APP_MEM": "500", "MODEL": "org/repo:Q4_K_M"}
        assert "APP_RPC_BACKENDS" not in body["env"] and runpod_double.request_violations == []
        for member, pod in zip(members, pods):  # each member's own printed key was pinned
            known = (Path(runpod_env["PODTUI_CONFIG_DIR"]) / "known_hosts").read_text()
            assert f"podtui-{member['id']} {pod.sshd.host_public_key.split()[0]}" in known

        ready = pods[0].daemon.wait_for_state({"ready"}, timeout=60)
        assert [b["endpoint"] for b in ready["cluster"]["backends"]] == result["endpoints"]
        reply = chat_completion(f"http://127.0.0.1:{pods[0].daemon.port}", api_key=pods[0].daemon.api_key(),
                                max_tokens=4)
        assert reply["choices"][0]["message"]["content"]

        assert [p.id for p in provider.list_pods()] == []  # members hidden from GET /v2/pods …
        assert len(provider.list_pods(include_cluster_pods=True)) == 3  # … unless includeClusterPods=true
        with pytest.raises(PodtuiError, match="delete the cluster via DELETE /v2/clusters/"):
            provider.terminate_pod(members[1]["id"])
        status = json.loads(run_podtui(runpod_env, "cluster", "status", "ic", "--json").stdout)
        assert (status["kind"], status["cluster_id"], status["server"]["state"]) == (
            "instant", result["cluster_id"], "ready")
        listed = json.loads(run_podtui(runpod_env, "cluster", "list", "--json").stdout)
        assert listed["clusters"][0]["runpod"]["by_status"] == {"RUNNING": 3} and listed["runpod_clusters"] == []

        # unlink a --direct cluster: the server drops the overlay endpoints podtui gave it (back to its
        # environment's link ports, where nothing listens: paused), and the record stays for terminate
        out = run_podtui(runpod_env, "cluster", "unlink", "ic", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["unlinked"] == {result["server"]: "cluster.direct"}
        paused = pods[0].daemon.wait_for_state({"paused"}, timeout=40)
        assert [b["endpoint"] for b in paused["cluster"]["backends"]] != result["endpoints"]

        out = run_podtui({k: v for k, v in runpod_env.items() if k != "RUNPOD_API_KEY"}, "cluster", "stop", "ic")
        assert out.returncode == 1 and "Runpod's API has no stop for one" in out.stderr   # no key needed to say so
        assert "podtui cluster terminate ic" in out.stderr and "Traceback" not in out.stderr
        out = run_podtui(runpod_env, "cluster", "terminate", "ic", stdin="n\n")
        assert out.returncode == 2 and f"Delete Instant Cluster ic ({result['cluster_id']})" in out.stderr
        out = run_podtui(runpod_env, "cluster", "terminate", "ic", "--yes", "--json")
        assert out.returncode == 0, out.stderr
        assert runpod_double.requests_to("DELETE", f"/v2/clusters/{result['cluster_id']}")
        assert all(p["status"] == "TERMINATED" for p in members) and runpod_double.clusters == {}
        assert json.loads(run_podtui(runpod_env, "cluster", "list", "--json").stdout)["clusters"] == []
    finally:
        stop_pods(pods)


def test_instant_launch_links_over_the_overlay_with_pinned_keys_and_a_stuck_launch_names_the_bill(
        runpod_env, runpod_double, llama_bin, tiny_model, tmp_path):
    pods = []
    try:
        # The server's links listen on APP_RPC_BACKENDS (rank mode's default is 127.0.0.1:60151); a free
        # port keeps this test off a port another test on the machine may hold.
        pods = _members(tmp_path, llama_bin, tiny_model, runpod_env, runpod_double, 2)
        pods[0].daemon.stop()
        pods[0].daemon.env["APP_RPC_BACKENDS"] = f"127.0.0.1:{free_port()}"
        pods[0].daemon.start()
        out = run_podtui(runpod_env, "cluster", "launch", "--instant", "--backends", "1", "--gpu", "NVIDIA A40",
                         "--model", "org/repo:Q4_K_M", "--name", "il", "--overlay-ssh-port",
                         str(pods[1].sshd.port), "--log-timeout", "20", "--json", timeout=110)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert [link["state"] for link in result["links"]] == ["up"]
        assert result["reach"] == {result["backends"][0]: f"127.0.0.1:{pods[1].sshd.port}"}  # PodCluster.ip:port
        assert result["links"][0]["backend"] == f"127.0.0.1:{pods[1].sshd.port}"
        pods[0].daemon.wait_for_state({"ready"}, timeout=60)
        reply = chat_completion(f"http://127.0.0.1:{pods[0].daemon.port}", api_key=pods[0].daemon.api_key(),
                                max_tokens=4)
        assert reply["choices"][0]["message"]["content"]

        runpod_double.public_ssh = False  # a second cluster whose members never get SSH: named, billed, deletable
        out = run_podtui(runpod_env, "cluster", "launch", "--instant", "--backends", "1", "--gpu", "NVIDIA A40",
                         "--model", "org/repo:Q4_K_M", "--name", "stuck", "--wait-timeout", "1", timeout=60)
        stuck = next(c for c in runpod_double.clusters.values() if c["name"] == "stuck")
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert f"Instant Cluster {stuck['id']} (stuck, 2 pods) was created and is billed" in out.stderr
        assert "podtui cluster terminate stuck" in out.stderr
        # its record has no members yet: unlink and status say so, never a traceback
        for verb in ("unlink", "status"):
            out = run_podtui(runpod_env, "cluster", verb, "stuck")
            assert "Traceback" not in out.stderr, (verb, out.stderr)
        assert run_podtui(runpod_env, "cluster", "unlink", "stuck").returncode == 0
        out = run_podtui(runpod_env, "cluster", "terminate", "stuck", "--yes")
        assert out.returncode == 0 and stuck["id"] not in runpod_double.clusters
    finally:
        stop_pods(pods)


def test_the_cluster_endpoints_follow_the_spec_and_bad_flags_are_refused_before_anything_is_created(
        runpod_double, provider, runpod_env):
    from podtui.providers.runpod_clusters import ClusterNotFound, RunpodClusters, cluster_body
    api = RunpodClusters(provider.api)
    body = cluster_body(name="c", image="img", gpu="NVIDIA A40", gpu_count=1, pod_count=2, env={"A": "1"},
                        disk_gb=20, volume_gb=None)
    made = api.create(body)
    assert (made.pod_count, made.pods_total, made.all_running) == (2, 2, False)
    members = api.members(made.id)
    assert [(m.rank, m.ip) for m in members] == [(0, "10.65.0.2"), (1, "10.65.0.3")]
    assert members[1].pod.env["NODE_RANK"] == "1" and members[1].pod.env["PRIMARY_ADDR"] == "10.65.0.2"
    assert [c.id for c in api.list()] == [made.id]
    with pytest.raises(PodtuiError, match="HTTP 422"):  # the spec: podCount 2..250
        api.create({**body, "compute": {**body["compute"], "podCount": 1}})
    with pytest.raises(PodtuiError, match="HTTP 422"):  # rename only
        api.api.call("PATCH", f"/v2/clusters/{made.id}", body={"compute": body["compute"]})
    problems = "\n".join(runpod_double.request_violations)
    assert "compute/podCount: 1 is less than the minimum of 2" in problems and "'compute' was unexpected" in problems
    api.delete(made.id)
    with pytest.raises(ClusterNotFound):
        api.get(made.id)
    for args, words in ((["--direct"], "--direct needs --instant"),
                        (["--gpu-count", "2"], "--gpu-count is for --instant"),
                        (["--instant", "--gpu-count", "2", "--app-mem", "9000"], "--app-mem gives 1 budget(s) for 2 "
                                                                                   "GPU(s) per pod"),
                        (["--app-mem", "9G"], "--app-mem '9G' is not MiB"),
                        (["--overlay-ssh-port", "2222"], "--overlay-ssh-port is for --instant with SSH links"),
                        (["--instant", "--direct", "--overlay-ssh-port", "2222"], "--overlay-ssh-port is for"),
                        (["--instant", "--cloud", "COMMUNITY"], "--cloud is not for --instant"),
                        (["--with-hf-token"], "HF_TOKEN is not set here")):
        out = run_podtui({k: v for k, v in runpod_env.items() if k != "HF_TOKEN"}, "cluster", "launch",
                         "--backends", "1", "--gpu", "NVIDIA A40", "--model", "org/repo:Q4_K_M", *args)
        assert out.returncode == 2 and words in out.stderr, (args, out.stderr)
    assert len(runpod_double.requests_to("POST", "/v2/")) == 2  # only this test's own creates
