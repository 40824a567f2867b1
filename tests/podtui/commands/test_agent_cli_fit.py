"""`podtui agent TARGET fit` end to end: podtui → real sshd → `remote-agent rpc` → the real daemon,
which runs the context-fit search with real llama-server launches under an address-space limit
(the CPU stand-in for a GPU's memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.testbed.cli import run_podtui
from tests.testbed.procs import free_port, stop_process
from tests.testbed.sshd import have_sshd

pytestmark = [pytest.mark.skipif(not have_sshd(), reason="needs openssh-server"), pytest.mark.timeout(120)]
MiB = 1 << 20


def test_podtui_agent_fit_searches_through_sshd_and_leaves_the_fitted_engine_serving(
        sshd, client_key, podtui_env, llama_bin, tiny_model, tmp_path):
    socket_path = tmp_path / "agent.sock"
    env = {**os.environ, "PORT": str(free_port()), "MODEL": str(tiny_model),
           "MALLOC_ARENA_MAX": "1", "ARGS": "-t 2 --threads-http 2 --no-warmup"}
    env.pop("ENGINE", None)
    env.pop("CTX", None)  # started at the engine's default; CTX as a number would cap the search
    daemon = subprocess.Popen(
        [sys.executable, "-m", "remote_agent", "daemon", "--socket", str(socket_path), "--state-dir",
         str(tmp_path / "state"), "--models-dir", str(tmp_path / "models"), "--engine-bin-dir", str(llama_bin),
         "--engine-address-space-limit", str(900 * MiB), "--engine-stack-limit", str(1 * MiB)],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = ["agent", f"root@127.0.0.1:{sshd.port}", "-i", str(client_key), "--fingerprint", sshd.host_fingerprint,
            "--agent-command", f"{sys.executable} -m remote_agent rpc --socket {socket_path}"]
    try:
        deadline = time.monotonic() + 30
        while True:
            out = run_podtui(podtui_env, *base, "status", "--json")
            if out.returncode == 0 and json.loads(out.stdout)["state"] == "ready":
                break
            assert time.monotonic() < deadline and daemon.poll() is None, out.stderr
            time.sleep(0.3)
        assert json.loads(out.stdout)["ctx"] == 4096  # no ctx given: the engine's own (trained), read from it

        out = run_podtui(podtui_env, *base, "fit", "--json", timeout=90)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        # tiny-a is trained for 4096 tokens, and 900 MiB holds that: one launch, capped by the model
        assert (result["ctx"], result["launches"], result["limited_by"]) == (4096, 1, "trained_ctx")
        assert result["budget_bytes"] == 900 * MiB and result["state"] == "ready"
        events = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
        assert {"event": "progress", "data": {"phase": "fit", "ctx": 4096, "message": "trying 4096"}} in events

        status = json.loads(run_podtui(podtui_env, *base, "status", "--json").stdout)
        assert status["state"] == "ready" and status["ctx"] == 4096
    finally:
        stop_process(daemon)
