"""A backend that lends several devices (ggml-rpc-server `-d CPU,CPU`: two RPC devices behind one
endpoint, RPC.md §1.1) with one APP_MEM budget per device, all real: the backend's status reports both
devices and both budgets, podtui's backend_budgets turns them into the server's per-device fit budgets,
and the server (given them with its direct endpoints) fits and loads with the split pinned to them.
The CPU device stands in for GPUs: CUDA devices' free-memory figures were not checked (no GPU)."""

from __future__ import annotations

import pytest

from podtui.services.cluster import ClusterProblem, Member, backend_budgets
from tests.testbed.agent_daemon import DaemonProcess
from tests.testbed.llama import chat_completion
from tests.testbed.procs import free_port
from tests.testbed.rpc import FAST_SERVER_FLAGS, backend_env, server_env

pytestmark = pytest.mark.timeout(120)


def test_one_budget_per_device_of_a_multi_device_backend_reaches_the_servers_fit(llama_bin, fit_large_model,
                                                                                   tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "s").mkdir()
    backend = DaemonProcess(tmp_path / "b", llama_bin,
                            env=backend_env(free_port(), ARGS="-d CPU,CPU", APP_MEM="200,90")).start()
    daemons = [backend]
    try:
        lent = backend.wait_for_state({"ready"}, timeout=20)["cluster"]
        assert [d["name"] for d in lent["devices"]] == ["CPU", "CPU"]
        assert (lent["memory_budgets_mib"], lent["memory_budget_mib"]) == ([200, 90], 290)
        budgets = backend_budgets([Member("b", None, status={"cluster": lent})])
        assert budgets == [200, 90]  # one per RPC device, in -d order (was None for multi-device backends)
        # one budget for two devices (possible when ARGS names none: the agent cannot count them) is refused
        single = {"cluster": {**lent, "memory_budgets_mib": [], "memory_budget_mib": 500}}
        with pytest.raises(ClusterProblem, match=r"b sets APP_MEM=500 \(1 budget\(s\)\) but lends 2 device\(s\)"):
            backend_budgets([Member("b", None, status=single)])
        endpoint = f"127.0.0.1:{backend.env['APP_PORT']}"
        server = DaemonProcess(tmp_path / "s", llama_bin, env=server_env(fit_large_model, [endpoint], CTX="auto"),
                               args=FAST_SERVER_FLAGS).start()
        daemons.append(server)
        server.wait_for_state({"ready"}, timeout=60)
        with server.client() as client:
            client.result("cluster.direct", {"endpoints": [endpoint], "budgets_mib": budgets})
        ready = server.wait_for_state({"ready"}, timeout=60, pred=lambda s: "-ts 200,90" in server.log_text())
        started = server.log_text().rsplit("started llama-server", 1)[1].splitlines()[0]
        assert "--fit off -ts 200,90" in started and f"--ctx-size {ready['ctx']}" in started
        assert chat_completion(f"http://127.0.0.1:{server.port}", api_key=server.api_key(), max_tokens=4)["choices"]
    finally:
        for daemon in daemons:
            daemon.stop()
