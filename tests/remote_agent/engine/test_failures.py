"""Failures the supervisor must classify and survive: crash loops, busy ports, missing binaries."""

from __future__ import annotations

import socket

import pytest

pytestmark = pytest.mark.timeout(60)


def test_an_engine_that_crashes_on_every_start_ends_paused_and_the_daemon_lives(make_daemon, standin_bin,
                                                                               tiny_model):
    daemon = make_daemon(standin_bin, env={"MODEL": str(tiny_model), "STANDIN_MODE": "crash"},
                         args=["--restart-backoff", "0.1", "--max-restarts", "2"])
    status = daemon.wait_for_state({"paused"})
    assert status["last_error"]["kind"] == "crashed"
    assert "paused after 3 failure(s) in a row" in status["last_error"]["message"]
    assert "exited with code 3" in status["last_error"]["message"]
    assert daemon.log_text().count("started llama-server") == 3
    assert daemon.alive() and daemon.client().result("status")["state"] == "paused"


def test_a_busy_engine_port_is_reported_as_port_in_use(make_daemon, standin_bin, tiny_model):
    daemon = make_daemon(standin_bin, args=["--no-autostart"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", daemon.port))
        squatter.listen()
        _, reply = daemon.client().call("engine.start", {"model": str(tiny_model)})
    assert reply["error"]["code"] == "port_in_use", reply
    assert str(daemon.port) in reply["error"]["message"]


def test_a_missing_engine_binary_is_reported_with_the_fix(make_daemon, tmp_path, tiny_model):
    empty = tmp_path / "no-engines"
    empty.mkdir()
    daemon = make_daemon(empty, args=["--no-autostart"])
    _, reply = daemon.client().call("engine.start", {"model": str(tiny_model)})
    assert reply["error"]["code"] == "missing_binary", reply
    assert "--engine-bin-dir" in reply["error"]["message"]


def test_a_bad_model_at_boot_is_paused_at_once_not_retried(make_daemon, llama_bin, tmp_path):
    corrupt = tmp_path / "broken.gguf"
    corrupt.write_bytes(b"GGUF" + b"\0" * 64)
    daemon = make_daemon(llama_bin, env={"MODEL": str(corrupt)}, args=["--restart-backoff", "0.1"])
    status = daemon.wait_for_state({"paused"})
    assert status["last_error"]["kind"] == "bad_model"
    assert daemon.log_text().count("started llama-server") == 1
