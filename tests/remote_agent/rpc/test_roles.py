"""Seed 003's APP_* variables read as documented (engine/roles.py), and the backend and none roles
on a real daemon: a refused APP_BIND, ggml-rpc-server started with SIGPIPE ignored and supervised
like any engine, requests a role does not serve refused with what it does instead."""

from __future__ import annotations

import os

import socket
import subprocess
import sys

import pytest

from remote_agent.engine.cluster import ClusterRole
from remote_agent.engine.roles import (
    BACKEND, ENGINE, NONE, SERVER, Endpoint, RoleError, check_bind, cluster_from_env, memory_budgets, parse_backends)
from remote_agent.server.settings import SettingsError, engine_env
from tests.remote_agent.rpc.conftest import start_backend
from tests.testbed.agent_daemon import REPO, DaemonProcess
from tests.testbed.procs import free_port
from tests.testbed.rpc import backend_env, engine_pid

pytestmark = pytest.mark.timeout(60)
SIGPIPE_BIT = 1 << (13 - 1)


def test_app_mode_unset_is_the_single_pod_engine_and_an_unknown_mode_is_refused():
    assert cluster_from_env({}).role == ENGINE
    assert engine_env({"MODEL": "m.gguf", "PORT": "5002"})["cluster"].role == ENGINE
    with pytest.raises(RoleError, match="APP_MODE='worker' is not a mode; use server, backend, none or rank"):
        cluster_from_env({"APP_MODE": "worker"})
    assert cluster_from_env({"APP_MODE": "NONE"}).role == NONE


def test_backend_defaults_and_app_mem_as_the_fits_budget():
    backend = cluster_from_env({"APP_MODE": "backend"})
    assert (backend.role, backend.bind, backend.port, backend.memory_budget_mib) == (BACKEND, "127.0.0.1", 50052, None)
    lent = cluster_from_env({"APP_MODE": "backend", "APP_PORT": "50060", "APP_MEM": "2048"})
    assert (lent.port, lent.memory_budget_mib) == (50060, 2048)
    assert any("APP_MEM=2048 MiB is this backend's memory budget" in note and "--mem" in note for note in lent.notes)
    with pytest.raises(RoleError, match="APP_MEM='2GB' is not an integer"):
        cluster_from_env({"APP_MODE": "backend", "APP_MEM": "2GB"})


@pytest.mark.parametrize("address", ["0.0.0.0", "203.0.113.7", "10.65.0.9", "localhost", "::1"])
def test_app_bind_other_than_loopback_or_the_clusters_node_address_is_refused_with_the_reason(address):
    with pytest.raises(RoleError) as refused:
        check_bind(address, node_addr="10.65.0.2")
    text = str(refused.value)
    assert f"APP_BIND={address!r}" in text or f"APP_BIND={address} is refused" in text
    assert "127.0.0.1" in text and "NODE_ADDR" in text
    if address == "0.0.0.0":
        assert "every interface" in text and "can run code in it" in text


def test_loopback_and_the_instant_cluster_node_address_are_accepted():
    assert check_bind("127.0.0.1", None) == "127.0.0.1" and check_bind("127.0.0.2", None) == "127.0.0.2"
    assert cluster_from_env({"APP_MODE": "backend", "APP_BIND": "10.65.0.2", "NODE_ADDR": "10.65.0.2"}).bind == "10.65.0.2"


def test_server_reads_the_seeds_variables_and_podtuis_own_names_win():
    env = {"APP_MODE": "server", "APP_RPC_BACKENDS": "10.65.0.2:50052, backend-b:50053", "APP_MODEL": "a.gguf",
           "APP_REPEAT_PENALTY": "1.1", "APP_PORT": "8080"}
    server = cluster_from_env(env)
    assert server.backends == (Endpoint("10.65.0.2", 50052), Endpoint("backend-b", 50053))
    assert (server.role, server.model, server.gpu_layers, server.repeat_penalty, server.port) == (
        SERVER, "a.gguf", 99, 1.1, 8080)
    both = cluster_from_env({**env, "PORT": "5002", "MODEL": "b.gguf", "GPU_LAYERS": "20", "APP_GPU_LAYERS": "99"})
    assert (both.port, both.model, both.gpu_layers) == (5002, "b.gguf", 20)
    assert {"PORT=5002 and APP_PORT=8080 are both set; PORT wins", "MODEL=b.gguf and APP_MODEL=a.gguf are both set; "
            "MODEL wins", "GPU_LAYERS=20 and APP_GPU_LAYERS=99 are both set; GPU_LAYERS wins"} <= set(both.notes)
    settings = engine_env({"APP_MODE": "server", "APP_RPC_BACKENDS": "h:1"})
    assert (settings["port"], settings["gpu_layers"]) == (5002, 99)  # podtui's engine port, not the seed's 8080
    role = ClusterRole(server, None, "/tmp")
    assert role.server_args() == ("--rpc", "10.65.0.2:50052,backend-b:50053", "--repeat-penalty", "1.1")


@pytest.mark.parametrize("value, problem", [
    ("", "APP_MODE=server needs APP_RPC_BACKENDS=host:port,host:port"),
    ("backend-cuda", "is not host:port"),
    ("[::1]:50052", "cannot take IPv6"),
    ("h:0", "has no valid port"),
    ("h:1,h:1", "names h:1 twice"),
])
def test_bad_app_rpc_backends_are_refused_naming_the_entry(value, problem):
    with pytest.raises(RoleError, match=problem.replace("[", r"\[").replace("(", r"\(")):
        parse_backends(value)
    with pytest.raises(SettingsError):
        engine_env({"APP_MODE": "server", "APP_RPC_BACKENDS": value})


def test_server_mode_refuses_a_public_bind_and_a_bad_penalty():
    with pytest.raises(RoleError, match="refused in server mode"):
        cluster_from_env({"APP_MODE": "server", "APP_RPC_BACKENDS": "h:1", "APP_BIND": "0.0.0.0"})
    with pytest.raises(RoleError, match="APP_REPEAT_PENALTY='x' must be a number above 0"):
        cluster_from_env({"APP_MODE": "server", "APP_RPC_BACKENDS": "h:1", "APP_REPEAT_PENALTY": "x"})


def test_the_daemon_refuses_app_bind_0_0_0_0_and_a_removed_flag_before_starting_anything(tmp_path):
    for env, words in (({"APP_BIND": "0.0.0.0"}, "APP_BIND=0.0.0.0 is refused"),
                       ({"ARGS": "--mem 1024"}, "ARGS passes -m/--mem, which ggml-rpc-server no longer has")):
        run = subprocess.run([sys.executable, "-m", "remote_agent", "daemon", "--socket", str(tmp_path / "a.sock"),
                              "--state-dir", str(tmp_path / "state")], cwd=REPO, capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", **backend_env(free_port()), **env}, timeout=30)
        assert run.returncode == 2 and words in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "a.sock").exists()


def test_a_backend_runs_ggml_rpc_server_with_sigpipe_ignored_and_refuses_model_requests(llama_bin, tmp_path):
    backend = start_backend(tmp_path / "backend", llama_bin, APP_MEM="1024")
    try:
        status = backend.wait_for_state({"ready"}, timeout=20)
        assert status["engine"] == "ggml-rpc-server" and status["role"] == "backend" and status["model"] is None
        assert status["cluster"]["memory_budget_mib"] == 1024 and status["cluster"]["bind"] == "127.0.0.1"
        assert "no authentication" in status["cluster"]["warning"]
        pid = engine_pid(backend)
        sigign = next(line for line in open(f"/proc/{pid}/status") if line.startswith("SigIgn:"))
        assert int(sigign.split()[1], 16) & SIGPIPE_BIT, "ggml-rpc-server must start with SIGPIPE ignored"
        argv = open(f"/proc/{pid}/cmdline").read().rstrip("\0").split("\0")
        assert argv[-5:-1] == ["-H", "127.0.0.1", "-p", backend.env["APP_PORT"]] and argv[-1] == "-c"
        environ = open(f"/proc/{pid}/environ").read().split("\0")
        assert f"LLAMA_CACHE={tmp_path / 'backend' / 'state' / 'rpc-cache'}" in environ  # -c's cache, on the volume
        with backend.client() as client:
            _, start = client.call("engine.start", {"model": "x.gguf"})
            _, fit = client.call("fit.search", {})
            restarted = client.result("engine.restart")
        assert start["error"]["code"] == "not_in_role" and "RPC backend (APP_MODE=backend)" in start["error"]["message"]
        assert fit["error"]["code"] == "not_in_role"
        assert restarted["state"] == "ready" and restarted["pid"] != pid
        assert restarted["cluster"]["cache_dir"] == str(tmp_path / "backend" / "state" / "rpc-cache" / "rpc")
    finally:
        backend.stop()


def test_a_backend_whose_port_is_taken_pauses_after_repeated_failures(llama_bin, tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        (tmp_path / "b").mkdir()
        backend = DaemonProcess(tmp_path / "b", llama_bin, env=backend_env(port),
                                args=["--restart-backoff", "0.1", "--max-restarts", "1"]).start()
        try:
            paused = backend.wait_for_state({"paused"}, timeout=20)
            assert paused["last_error"]["kind"] == "port_in_use"
            assert f"127.0.0.1:{port}" in paused["last_error"]["message"]
            assert "paused after 2 failure(s) in a row instead of crash-looping" in paused["last_error"]["message"]
        finally:
            backend.stop()


def test_role_none_runs_no_engine_and_says_so(llama_bin, tmp_path):
    (tmp_path / "n").mkdir()
    daemon = DaemonProcess(tmp_path / "n", llama_bin, env={"APP_MODE": "none", "MODEL": "ignored.gguf"}).start()
    try:
        with daemon.client() as client:
            status = client.result("status")
            _, start = client.call("engine.start", {"model": "x.gguf"})
            _, restart = client.call("engine.restart")
        assert (status["role"], status["state"], status["cluster"]) == ("none", "stopped", {"role": "none"})
        assert start["error"]["code"] == restart["error"]["code"] == "not_in_role"
        assert "APP_MODE=none: sshd and the agent, no engine" in start["error"]["message"]
        assert "APP_MODE=none: no engine runs here" in daemon.log_text()
    finally:
        daemon.stop()


def test_server_mode_runs_llama_server_and_takes_its_backends_from_app_rpc_backends_only():
    base = {"APP_MODE": "server", "APP_RPC_BACKENDS": "h:1"}
    with pytest.raises(SettingsError, match="ENGINE=koboldcpp cannot be one"):
        engine_env({**base, "ENGINE": "koboldcpp"})
    with pytest.raises(SettingsError, match="ARGS sets --rpc"):
        engine_env({**base, "ARGS": "--rpc other:2 -t 4"})
    assert engine_env({**base, "ARGS": "-t 4"})["args"] == ("-t", "4")


# -- APP_MODE=rank: one env for every Instant Cluster member (Runpod sets NODE_RANK, NODE_ADDR, NUM_NODES) --
RANK_ENV = {"APP_MODE": "rank", "NUM_NODES": "3", "NODE_ADDR": "10.65.0.3", "PRIMARY_ADDR": "10.65.0.2",
            "APP_BIND": "NODE_ADDR", "APP_PORT": "50052", "MODEL": "org/repo:Q4_K_M", "APP_MEM": "20000"}


def test_rank_0_is_the_server_on_the_link_ports_and_every_other_rank_a_backend_on_its_overlay_address():
    server = cluster_from_env({**RANK_ENV, "NODE_RANK": "0", "NODE_ADDR": "10.65.0.2"})
    assert (server.role, server.rank, server.num_nodes, server.model) == (SERVER, 0, 3, "org/repo:Q4_K_M")
    assert server.rpc_list == "127.0.0.1:60151,127.0.0.1:60152"  # NUM_NODES-1 links, where podtui's links listen
    assert server.port is None  # APP_PORT is the backends' RPC port in the shared env; llama-server keeps 5002
    assert engine_env({**RANK_ENV, "NODE_RANK": "0"})["port"] == 5002
    assert any("NODE_RANK=0 of NUM_NODES=3, so this pod is the server" in note for note in server.notes)
    backend = cluster_from_env({**RANK_ENV, "NODE_RANK": "2"})
    assert (backend.role, backend.bind, backend.port, backend.memory_budget_mib, backend.rank) == (
        BACKEND, "10.65.0.3", 50052, 20000, 2)
    given = cluster_from_env({**RANK_ENV, "NODE_RANK": "0", "APP_RPC_BACKENDS": "10.65.0.3:50052,10.65.0.4:50052"})
    assert given.rpc_list == "10.65.0.3:50052,10.65.0.4:50052"
    sixteen = cluster_from_env({**RANK_ENV, "NODE_RANK": "0", "NUM_NODES": "16"})   # Runpod's largest: 15 backends
    assert len(sixteen.backends) == 15


@pytest.mark.parametrize("env, problem", [
    ({"NODE_RANK": None}, "APP_MODE=rank needs NODE_RANK, which is unset: Runpod sets it on every Instant Cluster"),
    ({"NUM_NODES": None, "NODE_RANK": "1"}, "APP_MODE=rank needs NUM_NODES, which is unset"),
    ({"NODE_RANK": "one"}, "NODE_RANK='one' is not a number from 0 to 15"),
    ({"NODE_RANK": "3"}, "NODE_RANK=3 is not below NUM_NODES=3"),
    ({"NUM_NODES": "1", "NODE_RANK": "0"}, "NUM_NODES='1' is not a number from 2 to 16"),
    ({"NUM_NODES": "40", "NODE_RANK": "0"}, "NUM_NODES='40' is not a number from 2 to 16"),
    ({"NUM_NODES": "17", "NODE_RANK": "0"}, "NUM_NODES='17' is not a number from 2 to 16"),
    # NODE_ADDR is only a variable: it opens no public or every-interface port
    ({"NODE_RANK": "1", "NODE_ADDR": "0.0.0.0"}, "APP_BIND=0.0.0.0 (NODE_ADDR) is refused"),
    ({"NODE_RANK": "1", "NODE_ADDR": "8.8.8.8"}, "APP_BIND=8.8.8.8 (NODE_ADDR) is refused"),
    ({"NODE_RANK": "1", "NODE_ADDR": "0.0.0.0", "APP_BIND": "0.0.0.0"}, "APP_BIND=0.0.0.0 (NODE_ADDR) is refused"),
    ({"NODE_RANK": "1", "NODE_ADDR": None}, "APP_BIND=NODE_ADDR means this Instant Cluster node's overlay address, "
                                            "but NODE_ADDR is unset"),
])
def test_rank_mode_without_a_good_node_rank_or_num_nodes_is_refused_naming_it(env, problem):
    merged = {k: v for k, v in {**RANK_ENV, **env}.items() if v is not None}
    with pytest.raises(RoleError) as refused:
        cluster_from_env(merged)
    assert problem in str(refused.value)
    with pytest.raises(SettingsError):
        engine_env(merged)


def test_the_boot_dry_run_names_the_rank_role_and_refuses_a_missing_rank(tmp_path):
    import argparse

    from remote_agent.boot.config import BootConfigError, add_boot_arguments, config_from
    parser = argparse.ArgumentParser()
    add_boot_arguments(parser)
    args = parser.parse_args(["--dry-run", "--root", str(tmp_path)])
    config = config_from(args, {**RANK_ENV, "NODE_RANK": "1"})
    assert config.role_note == ("APP_MODE=rank: NODE_RANK=1 of NUM_NODES=3, so this pod is the backend: "
                                "ggml-rpc-server on 10.65.0.3:50052")
    assert config_from(args, {**RANK_ENV, "NODE_RANK": "0"}).role_note == (
        "APP_MODE=rank: NODE_RANK=0 of NUM_NODES=3, so this pod is the server: "
        "llama-server --rpc 127.0.0.1:60151,127.0.0.1:60152")
    with pytest.raises(BootConfigError, match="APP_MODE=rank needs NODE_RANK"):
        config_from(args, RANK_ENV)
    # and the real dry run prints it
    import subprocess
    import sys
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("APP_", "MODEL", "NODE_", "NUM_"))},
           **RANK_ENV, "NODE_RANK": "1", "DRYRUN": "1"}
    out = subprocess.run([sys.executable, "-m", "remote_agent", "boot", "--exit-on-error", "--root", str(tmp_path / "dry")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "NODE_RANK=1 of NUM_NODES=3, so this pod is the backend: ggml-rpc-server on 10.65.0.3:50052" in out.stdout


def test_app_mem_takes_one_budget_per_device_in_the_order_args_names_them():
    two = {"APP_MODE": "backend", "ARGS": "-d CUDA0,CUDA1 -t 4"}
    lent = cluster_from_env({**two, "APP_MEM": "20000,18000"})
    assert (lent.memory_budgets_mib, lent.memory_budget_mib) == ((20000, 18000), 38000)
    assert memory_budgets({"APP_MEM": "500", "ARGS": "--device=CPU"}) == (500,)
    with pytest.raises(RoleError, match=r"APP_MEM=20000 is one budget but ARGS -d lends 2 devices \(CUDA0,CUDA1\): "
                                        r"it could mean per device or in total; .* APP_MEM=20000,20000"):
        cluster_from_env({**two, "APP_MEM": "20000"})
    with pytest.raises(RoleError, match="APP_MEM=1,2,3 gives 3 budgets but ARGS -d names 2 devices"):
        cluster_from_env({**two, "APP_MEM": "1,2,3"})
    # without -d, ggml-rpc-server's own order (every GPU); podtui checks the count against its devices
    assert cluster_from_env({"APP_MODE": "backend", "APP_MEM": "1,2"}).memory_budgets_mib == (1, 2)
