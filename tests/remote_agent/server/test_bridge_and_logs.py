"""`remote-agent rpc` end to end over stdin/stdout, log streaming with a slow follower, cancel."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.testbed.agent_daemon import REPO

pytestmark = pytest.mark.timeout(60)


def rpc(socket_path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "remote_agent", "rpc", "--socket", str(socket_path)], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_rpc_bridges_stdin_and_stdout_to_the_daemon(make_daemon, standin_bin, tiny_model):
    daemon = make_daemon(standin_bin, args=["--no-autostart"])
    bridge = rpc(daemon.socket)
    requests = [{"id": 1, "method": "engine.start", "params": {"model": str(tiny_model), "ctx": 128}},
                {"id": 2, "method": "status"}]
    out, err = bridge.communicate(b"".join(json.dumps(r).encode() + b"\n" for r in requests) + b"{oops\n",
                                  timeout=30)
    assert bridge.returncode == 0, err
    messages = [json.loads(line) for line in out.splitlines()]
    assert messages[0]["hello"] == "remote-agent" and messages[0]["protocol"] == 1
    finals = {m["id"]: m for m in messages[1:] if "event" not in m}
    assert finals[1]["result"]["state"] == "ready"
    assert finals[2]["result"]["port"] == daemon.port
    assert finals[None]["error"]["code"] == "bad_json"


def test_rpc_without_a_daemon_says_so_and_exits_1(tmp_path):
    bridge = rpc(tmp_path / "nothing.sock")
    _, err = bridge.communicate(b"", timeout=20)
    assert bridge.returncode == 1
    assert b"the agent daemon is not running" in err and b"remote-agent daemon" in err


def test_rpc_exits_when_the_daemon_goes_away(make_daemon, standin_bin):
    daemon = make_daemon(standin_bin, args=["--no-autostart"])
    bridge = rpc(daemon.socket)
    assert json.loads(bridge.stdout.readline())["hello"] == "remote-agent"
    daemon.stop()
    assert bridge.wait(20) == 0


def test_a_slow_log_follower_loses_lines_and_gets_the_dropped_marker(make_daemon, standin_bin, tiny_model):
    daemon = make_daemon(standin_bin, args=["--no-autostart"], env={"STANDIN_MODE": "chatty", "STANDIN_LINES": "30000"})
    follower = daemon.client()
    follower.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
    follower.send({"id": "f", "method": "logs.tail", "params": {"n": 0, "follow": True, "source": "engine"}})
    time.sleep(0.2)
    # the engine floods its log while the follower reads nothing; the engine must not wait on it
    started = daemon.client().result("engine.start", {"model": str(tiny_model)})
    assert started["state"] == "ready"
    time.sleep(0.5)
    follower.send({"method": "cancel", "params": {"id": "f"}})
    lines, markers, final = [], [], None
    while final is None:
        message = follower.read()
        if message.get("id") != "f":
            continue
        if "event" in message:
            data = message["data"]
            (markers if data.get("dropped") else lines).append(data)
        else:
            final = message
    assert markers, (len(lines), final, lines[:2], lines[-2:])
    assert all(m["line"] == f"[{m['dropped']} lines dropped]" for m in markers)
    assert final["result"]["cancelled"] is True
    received = [l["line"] for l in lines if l["line"].startswith("stand-in engine log line")]
    assert 0 < len(received) < 30000
    assert len(received) + sum(m["dropped"] for m in markers) >= 30000  # every line: received or counted
    numbers = [int(l.split()[4]) for l in received]
    assert numbers == sorted(numbers)


def test_logs_tail_returns_the_last_n_lines(make_daemon, standin_bin, tiny_model):
    daemon = make_daemon(standin_bin, args=["--no-autostart"], env={"STANDIN_MODE": "chatty", "STANDIN_LINES": "50"})
    client = daemon.client()
    client.result("engine.start", {"model": str(tiny_model)})
    time.sleep(0.2)
    events, reply = client.call("logs.tail", {"n": 5, "source": "engine"})
    assert reply["result"] == {"lines": 5}
    assert [e["data"]["source"] for e in events] == ["engine"] * 5
    assert events[-1]["data"]["line"].startswith("stand-in engine listening")
    agent_events, _ = client.call("logs.tail", {"n": 100, "source": "agent"})
    assert any("ready on port" in e["data"]["line"] for e in agent_events)
