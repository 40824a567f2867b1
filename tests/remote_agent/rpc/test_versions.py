"""Every pod must run the same llama.cpp build. A backend that answers the RPC handshake with another
protocol is refused with a clear error before llama-server starts, and llama-server's own abort
lines are classified, naming the backend. The other-version server is FakeRpcServer, a double that
says so (tests/testbed/rpc.py); the rest is the test bed's real llama-server and ggml-rpc-server."""

from __future__ import annotations

import subprocess

import pytest

from remote_agent.engine.adapters import adapter_for
from remote_agent.engine.adapters.classify import RULES
from tests.remote_agent.rpc.conftest import start_backend
from tests.testbed.agent_daemon import DaemonProcess
from tests.testbed.procs import free_port
from tests.testbed.rpc import FAST_SERVER_FLAGS, FakeRpcServer, server_env, wait_until

pytestmark = pytest.mark.timeout(90)


def _llama_server_against(llama_bin, tiny_model, endpoint: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(llama_bin / "llama-server"), "--rpc", endpoint, "-m", str(tiny_model), "--host",
                           "127.0.0.1", "--port", str(free_port()), "-c", "512"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", timeout=60,
                          start_new_session=True)


def test_llama_servers_own_abort_on_another_protocol_is_classified_naming_the_backend(llama_bin, tiny_model):
    with FakeRpcServer((3, 0, 0)) as fake:
        run = _llama_server_against(llama_bin, tiny_model, fake.endpoint)
    assert run.returncode == -6  # SIGABRT: RPC failures abort (RPC.md fact 7)
    failure = adapter_for("llama-server").classify(run.returncode, run.stdout.splitlines())
    assert failure.code == "rpc_version_mismatch"
    assert failure.details == {"backend_protocol": "3.0.0", "backend": fake.endpoint}
    assert "run the same llama.cpp build on every pod" in failure.message


def test_llama_servers_own_abort_on_an_unreachable_backend_is_classified_naming_it(llama_bin, tiny_model):
    endpoint = f"127.0.0.1:{free_port()}"
    run = _llama_server_against(llama_bin, tiny_model, endpoint)
    failure = adapter_for("llama-server").classify(run.returncode, run.stdout.splitlines())
    assert (failure.code, failure.details) == ("backend_unreachable", {"backend": endpoint})
    assert f"Failed to connect to {endpoint}" in failure.message and "SIGABRT" in failure.message


def test_a_server_over_a_backend_of_another_build_pauses_with_a_clear_error_and_never_starts_llama_server(
        llama_bin, tiny_model, tmp_path):
    real = start_backend(tmp_path / "backend", llama_bin)
    server = None
    try:
        with FakeRpcServer((3, 0, 0)) as fake:
            real.wait_for_state({"ready"}, timeout=20)
            backends = [f"127.0.0.1:{real.env['APP_PORT']}", fake.endpoint]
            (tmp_path / "server").mkdir()
            server = DaemonProcess(tmp_path / "server", llama_bin, env=server_env(tiny_model, backends),
                                   args=FAST_SERVER_FLAGS).start()
            paused = server.wait_for_state({"paused"}, timeout=20)
            error = paused["last_error"]
            assert error["kind"] == "rpc_version_mismatch" and error["backend"] == fake.endpoint
            assert error["backends_down"] == [fake.endpoint]
            assert (f"backend {fake.endpoint} speaks RPC protocol 3.0.0, this pod's 7.0.0 (llama.cpp 0.5.0-dev"
                    in error["message"])
            assert "run the same llama.cpp build on every pod" in error["message"]
            states = {b["endpoint"]: (b["state"], b["protocol"]) for b in paused["cluster"]["backends"]}
            assert states == {backends[0]: ("answers", "7.0.0"), fake.endpoint: ("mismatch", "3.0.0")}
            wait_until(lambda: fake.hellos >= 3, 10, "the paused server asking again")  # it keeps asking
            assert "started llama-server" not in server.log_text()
            assert "Traceback" not in server.log_text()
    finally:
        for daemon in (server, real):
            if daemon is not None:
                daemon.stop()


def test_every_rpc_rule_names_its_kind_for_its_real_line():
    rpc_rules = [rule for rule in RULES if "ggml-rpc-server" in rule.engines]
    assert {rule.kind for rule in rpc_rules} >= {"rpc_version_mismatch", "backend_unreachable", "backend_lost",
                                                 "port_in_use", "unsupported"}
    for rule in rpc_rules:
        failure = adapter_for("ggml-rpc-server").classify(0, ["Starting RPC server v7.0.0", rule.example])
        assert failure.code == rule.kind and "exited with code 0" in failure.message
