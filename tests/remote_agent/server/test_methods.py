"""engine.stop and models.list/delete through the daemon (stand-in engine: these are about the agent)."""

from __future__ import annotations

import shutil

import pytest

pytestmark = pytest.mark.timeout(60)


def test_the_served_model_cannot_be_deleted_until_the_engine_stops(make_daemon, standin_bin, tiny_model, tmp_path):
    root = tmp_path / "pod"
    (root / "models").mkdir(parents=True)
    local = shutil.copy(tiny_model, root / "models" / "tiny-a.gguf")
    daemon = make_daemon(standin_bin, root=root, env={"MODEL": str(local)})
    client = daemon.client()
    assert daemon.wait_for_state({"ready"})["model_path"] == str(local)
    listed = client.result("models.list")
    assert [m["name"] for m in listed] == ["tiny-a.gguf"] and listed[0]["last_used"]

    _, reply = client.call("models.delete", {"name": "tiny-a.gguf"})
    assert reply["error"]["code"] == "in_use" and "stop the engine" in reply["error"]["message"]

    stopped = client.result("engine.stop")
    assert stopped["state"] == "stopped" and stopped["pid"] is None and stopped["model"] is None
    assert client.result("models.delete", {"name": "tiny-a.gguf"})["freed_bytes"] > 0
    assert client.result("models.list") == []


def test_a_stopped_engine_stays_stopped_across_a_daemon_restart(make_daemon, standin_bin, tiny_model, tmp_path):
    env = {"MODEL": str(tiny_model)}
    daemon = make_daemon(standin_bin, root=tmp_path / "pod", env=env)
    daemon.wait_for_state({"ready"})
    daemon.client().result("engine.stop")
    daemon.stop()
    again = make_daemon(standin_bin, root=tmp_path / "pod", env=env, port=daemon.port)
    assert again.client().result("status")["state"] == "stopped"
    assert "stopped on purpose" in again.log_text()


def test_cancel_answers_and_ends_a_log_follow(make_daemon, standin_bin):
    daemon = make_daemon(standin_bin, args=["--no-autostart"])
    client = daemon.client()
    client.send({"id": 9, "method": "logs.tail", "params": {"follow": True, "n": 1}})
    client.send({"id": 10, "method": "cancel", "params": {"id": 9}})
    replies = {}
    while len(replies) < 2:
        message = client.read()
        if "event" not in message:
            replies[message["id"]] = message
    assert replies[10]["result"] == {"cancelled": True}
    assert replies[9]["result"]["cancelled"] is True
