"""The TUI on an SSH host added with the real `podtui hosts add` (the test-bed sshd, its key pinned
by fingerprint, the real `remote-agent daemon` + CPU llama-server behind it): listed by the
default wiring, its model swapped and its agent log followed over the verified SSH connection."""

from __future__ import annotations

import json
import os
import urllib.request
import subprocess
import sys
from pathlib import Path

import pytest

from podtui.tui.app import build_app
from podtui.tui.screens.logs import LogsScreen
from podtui.tui.screens.swap import SwapDialog
from podtui.tui.widgets.pod_table import PodTable
from tests.testbed.agent_daemon import DaemonProcess
from tests.podtui.tui.helpers import shown

pytestmark = pytest.mark.timeout(180)
PODTUI = str(Path(sys.executable).parent / "podtui")


@pytest.fixture
def host(tmp_path, monkeypatch, sshd, client_key, llama_bin, tiny_model):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SSH_AUTH_SOCK", "")
    root = tmp_path / "daemon"
    root.mkdir()
    daemon = DaemonProcess(root, llama_bin, env={"MODEL": str(tiny_model), "CTX": "512"}).start()
    bridge = f"{sys.executable} -m remote_agent rpc --socket {daemon.socket}"
    out = subprocess.run([PODTUI, "hosts", "add", f"root@127.0.0.1:{sshd.port}", "--name", "box",
                          "-i", str(client_key), "--agent-command", bridge, "--fingerprint",
                          sshd.host_fingerprint], env=dict(os.environ), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    daemon.wait_for_state({"ready"}, timeout=60)
    yield daemon
    daemon.stop()


async def wait_for(pilot, condition, timeout=30.0):
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"condition not reached; screen {pilot.app.screen!r}, "
                         f"errors: {pilot.app.errors_shown}")


def box_row(app):
    table = app.screen.query_one(PodTable)
    return next((row for row in table.rows_by_key.values() if row.name == "box"), None)


async def test_added_host_is_listed_swapped_and_logged(host, tiny_model_b):
    app = build_app(refresh_seconds=60, offer_first_run=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.screen.query(PodTable) and box_row(app) is not None)
        assert box_row(app).status == "RUNNING"
        table = app.screen.query_one(PodTable)
        table.move_cursor(row=table.get_row_index(box_row(app).key))

        await pilot.press("m")
        await wait_for(pilot, lambda: shown(app.screen, SwapDialog))
        dialog = app.screen
        dialog.query_one("#model").value = str(tiny_model_b)
        await pilot.press("enter")
        await wait_for(pilot, lambda: dialog.outcome == "ok", timeout=90)
        assert str(tiny_model_b) in str(dialog.query_one("#swap-result").render())
        await pilot.press("escape")

        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen))
        await wait_for(pilot, lambda: app.screen.log_view.buffer.total > 0)
        await pilot.press("escape")

        await pilot.press("t")          # a tunnel to the host's engine, key checked first
        services = app.services
        await wait_for(pilot, lambda: services._tunnels and services._api_keys)
        url = next(iter(services._tunnels.values()))[1]
        assert services._api_keys[box_row(app).key] == host.api_key()   # what `t` asked the agent
        request = urllib.request.Request(
            f"{url}/chat/completions",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {host.api_key()}"},
            data=json.dumps({"messages": [{"role": "user", "content": "Hi"}],
                             "max_tokens": 4}).encode())
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert json.load(reply)["choices"]
        await pilot.press("t")
        await wait_for(pilot, lambda: not services._tunnels)
