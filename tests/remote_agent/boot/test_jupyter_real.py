"""Jupyter in pod mode for real (issue 20): `remote-agent boot` with JUPYTER=1 starts Jupyter (jupyter_server,
the API JupyterLab runs on) beside the test-bed sshd and the real daemon; it answers only with its token or
JUPYTER_PASSWORD, only on loopback, serves the volume, shows in `status`, and comes back when killed.
One boot (and one Jupyter start, ~2 s) for the module; the last test stops it."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import httpx
import pytest

from remote_agent.procgroup import pid_alive
from tests.remote_agent.boot.conftest import assert_no_secrets
from tests.remote_agent.boot.jupyter_boot import PASSWORD, start_jupyter_boot, state_file, wait_state
from tests.testbed.agent_daemon import AgentClient

pytestmark = pytest.mark.timeout(90)
LISTEN = "0A"  # TCP state code in /proc/net/tcp
LOOPBACK_V4 = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it


@pytest.fixture(scope="module")
def booted(tmp_path_factory, client_key):
    run = start_jupyter_boot(tmp_path_factory.mktemp("jupyter-boot"), client_key)
    yield run
    run.stop()


def agent_dir(run) -> Path:
    return run.root / "workspace" / ".podtui" / "agent"


def base(run) -> str:
    return f"http://127.0.0.1:{run.env['JUPYTER_PORT']}"


def token(run) -> str:
    return (agent_dir(run) / "jupyter-token").read_text().strip()


def test_jupyter_answers_only_with_its_token_and_serves_the_volume(booted):
    (booted.root / "workspace" / "probe.ipynb").write_text(json.dumps(
        {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    key = token(booted)
    assert len(key) >= 40
    assert stat.S_IMODE((agent_dir(booted) / "jupyter-token").stat().st_mode) == 0o600
    config = agent_dir(booted) / "jupyter" / "jupyter_server_config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    hashed = json.loads(config.read_text())["PasswordIdentityProvider"]["hashed_password"]
    assert hashed.startswith("argon2:") and PASSWORD not in config.read_text()

    refused = httpx.get(f"{base(booted)}/api/contents", timeout=10)
    assert refused.status_code == 403
    wrong = httpx.get(f"{base(booted)}/api/contents", headers={"Authorization": "token not-the-token"}, timeout=10)
    assert wrong.status_code == 403
    listing = httpx.get(f"{base(booted)}/api/contents", params={"token": key}, timeout=10)
    assert listing.status_code == 200
    assert "probe.ipynb" in {item["name"] for item in listing.json()["content"]}


def test_jupyter_password_logs_in_as_jupyter_hashes_it(booted):
    with httpx.Client(base_url=base(booted), timeout=10) as client:
        client.get("/login")
        xsrf = client.cookies.get("_xsrf")
        assert client.post("/login", data={"_xsrf": xsrf, "password": "wrong"}).status_code == 401
        assert client.post("/login", data={"_xsrf": xsrf, "password": PASSWORD}).status_code == 302
        assert client.get("/api/status").status_code == 200


def listeners(port: int) -> list[tuple[str, str]]:
    """(file, local address hex) of every LISTEN socket on port, IPv4 and IPv6."""
    found = []
    for name in ("tcp", "tcp6"):
        for line in Path("/proc/net", name).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, port_hex = fields[1].rpartition(":")
            if fields[3] == LISTEN and int(port_hex, 16) == port:
                found.append((name, address))
    return found


def test_nothing_listens_for_jupyter_beyond_loopback(booted):
    found = listeners(int(booted.env["JUPYTER_PORT"]))
    assert found == [("tcp", LOOPBACK_V4)], found


def test_status_reports_jupyter_and_only_jupyter_token_tells_the_token(booted):
    with AgentClient(booted.root / "run" / "remote-agent" / "agent.sock", timeout=20) as agent:
        status = agent.result("status")
        answer = agent.result("jupyter.token")
    jupyter = status["jupyter"]
    assert jupyter["state"] == "running" and jupyter["port"] == int(booted.env["JUPYTER_PORT"])
    assert pid_alive(jupyter["pid"])
    environ = Path(f"/proc/{jupyter['pid']}/environ").read_bytes().split(b"\0")
    names = {entry.partition(b"=")[0].decode() for entry in environ}
    assert not names & {"HF_TOKEN", "RUNPOD_API_KEY", "JUPYTER_PASSWORD"}  # notebooks inherit this
    assert token(booted) not in json.dumps(status)  # the token only when asked for
    assert answer["token"] == token(booted) and answer["state"]["state"] == "running"


def test_a_killed_jupyter_is_restarted_with_backoff_and_the_same_token(booted):
    before = json.loads(state_file(booted).read_text())
    os.killpg(before["pid"], signal.SIGKILL)
    started = time.monotonic()
    after = wait_state(booted, "running", timeout=60, restarts=before["restarts"] + 1)
    assert after["pid"] != before["pid"]
    assert time.monotonic() - started >= 0.9  # the first restart waits the 1 s backoff
    assert "[jupyter] exited with code -9; restarting in 1 s" in booted.output()
    assert httpx.get(f"{base(booted)}/api/status", params={"token": token(booted)}, timeout=10).status_code == 200


def test_stopping_the_pod_stops_jupyter_and_nothing_secret_was_printed(booted):
    pid = json.loads(state_file(booted).read_text())["pid"]
    out = booted.output()
    assert "starting Jupyter on 127.0.0.1:" in out and "podtui tunnel podjup1 --jupyter" in out
    assert booted.terminate() == 0
    assert not pid_alive(pid)
    assert json.loads(state_file(booted).read_text())["state"] == "stopped"
    out = booted.output()
    assert_no_secrets(out)
    assert token(booted) not in out and PASSWORD not in out
