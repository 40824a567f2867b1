"""Boot's idle auto-stop watches the engine port the daemon really uses, and never sends HTTP where no
HTTP engine runs: APP_MODE=server with only APP_PORT set probes APP_PORT (it probed 5002), and the backend
and none roles skip the engine probe (HTTP sent to ggml-rpc-server, which serves one client, can kill it).

A counting TCP listener stands on the engine port and another stands in for Runpod's REST API (a loopback
double: it answers every request 200, enough for the one stop request, which shows the watcher ran)."""

from __future__ import annotations

import sys
import time

import pytest

from tests.testbed.cli import CountingUpstream
from tests.testbed.procs import free_port

SLEEPER = f"{sys.executable} -c 'import time; time.sleep(600)'"  # the daemon: not what is tested here


@pytest.fixture
def listeners():
    made = []

    def make() -> CountingUpstream:
        made.append(CountingUpstream())
        return made[-1]

    yield make
    for upstream in made:
        upstream.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("role, probed", [("server", True), ("backend", False), ("none", False)])
def test_idle_watcher_probes_the_roles_engine_port_only_where_an_http_engine_runs(make_boot, listeners, role,
                                                                                   probed):
    engine, port_var, runpod_api = listeners(), listeners(), listeners()
    env = {"APP_MODE": role, "APP_PORT": str(engine.port), "IDLE_STOP_MINUTES": "1",
           "RUNPOD_API_URL": f"http://127.0.0.1:{runpod_api.port}"}
    if role == "server":  # only APP_PORT: the server's llama-server listens there
        env.update(PORT="", APP_RPC_BACKENDS=f"127.0.0.1:{free_port()}")
    else:  # PORT too: the old probe went there whatever the role
        env["PORT"] = str(port_var.port)
    run = make_boot("--exit-on-error", "--daemon-command", SLEEPER, "--idle-unit-seconds", "1", env=env).start()
    run.wait_for("idle auto-stop is on")
    deadline = time.monotonic() + 20
    while runpod_api.connections == 0 and time.monotonic() < deadline:  # idle 1 s, then the stop request
        time.sleep(0.05)
    assert runpod_api.connections >= 1, run.output()
    assert "stop" in run.output()
    if probed:
        assert engine.connections > 0  # APP_PORT, where llama-server --rpc listens in the server role
        assert f"ssh -N -L 5002:127.0.0.1:{engine.port} " in run.output()
    else:
        assert engine.connections == 0 and port_var.connections == 0  # no engine probe at all
    assert run.terminate() == 0
