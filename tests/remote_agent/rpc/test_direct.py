"""APP_MODE=rank (one env for every Instant Cluster member) and `cluster.direct`, all real: two backend
daemons and one server daemon, each given the same seed 003 env plus what Runpod sets per member
(NODE_RANK, NODE_ADDR, NUM_NODES). On loopback every node's overlay address is 127.0.0.1, so the
backends differ by APP_PORT. The server (rank 0) waits on its link ports until `cluster.direct`
hands it the backends' overlay endpoints; it then serves a chat over them, and keeps them across a
daemon restart."""

from __future__ import annotations

import pytest

from tests.testbed.agent_daemon import DaemonProcess
from tests.testbed.llama import chat_completion
from tests.testbed.procs import free_port
from tests.testbed.rpc import FAST_SERVER_FLAGS

pytestmark = pytest.mark.timeout(120)


def _member(root, llama_bin, env: dict, rank: int, **extra: str) -> DaemonProcess:
    (root / f"rank{rank}").mkdir()
    return DaemonProcess(root / f"rank{rank}", llama_bin, env={**env, "NODE_RANK": str(rank), **extra},
                         args=FAST_SERVER_FLAGS if rank == 0 else ["--restart-backoff", "1"]).start()


def test_rank_mode_members_and_direct_endpoints_serve_a_chat_and_survive_a_server_restart(
        llama_bin, tiny_model, tmp_path):
    shared = {"APP_MODE": "rank", "NUM_NODES": "3", "NODE_ADDR": "127.0.0.1", "PRIMARY_ADDR": "127.0.0.1",
              "APP_BIND": "NODE_ADDR", "MODEL": str(tiny_model), "CTX": "1024"}
    ports = [free_port(), free_port()]
    members = []
    try:
        members += [_member(tmp_path, llama_bin, shared, rank, APP_PORT=str(port))
                    for rank, port in ((1, ports[0]), (2, ports[1]))]
        for rank, backend in enumerate(members, start=1):
            status = backend.wait_for_state({"ready"}, timeout=20)
            assert (status["role"], status["cluster"]["rank"], status["cluster"]["bind"]) == ("backend", rank,
                                                                                             "127.0.0.1")
        server = _member(tmp_path, llama_bin, shared, 0)
        members.append(server)
        paused = server.wait_for_state({"paused"}, timeout=30)  # nothing listens on its link ports yet
        assert paused["cluster"]["rank"] == 0 and "127.0.0.1:60151" in paused["last_error"]["message"]
        endpoints = [f"127.0.0.1:{port}" for port in ports]
        with server.client() as client:
            _, bad = client.call("cluster.direct", {"endpoints": ["[::1]:50052"]})
            answer = client.result("cluster.direct", {"endpoints": endpoints})
        assert bad["error"]["code"] == "bad_params" and "cannot take IPv6" in bad["error"]["message"]
        assert answer["cluster"]["direct"] is True
        ready = server.wait_for_state({"ready"}, timeout=60)
        assert [b["endpoint"] for b in ready["cluster"]["backends"]] == endpoints
        assert chat_completion(f"http://127.0.0.1:{server.port}", api_key=server.api_key(),
                               max_tokens=4)["choices"][0]["message"]["content"]
        assert f"--rpc {','.join(endpoints)}" in server.log_text()

        server.stop()  # a daemon restart keeps the endpoints (state dir), and serves on them again
        server.start()
        again = server.wait_for_state({"ready"}, timeout=60)
        assert [b["endpoint"] for b in again["cluster"]["backends"]] == endpoints
        with server.client() as client:  # back to the environment's endpoints: paused on the link ports again
            client.result("cluster.direct", {"endpoints": []})
        assert "127.0.0.1:60151" in server.wait_for_state({"paused"}, timeout=30)["last_error"]["message"]
    finally:
        for daemon in members:
            daemon.stop()
