"""The TUI with no Runpod key on a machine running the local pod (the real `podtui local start`:
`remote-agent daemon` + the CPU llama-server on a tiny model): the default wiring lists it, swaps
its model through the local bridge, follows its agent log, and stops it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from podtui.tui.app import build_app
from podtui.tui.screens.logs import LogsScreen
from podtui.tui.screens.swap import SwapDialog
from podtui.tui.widgets.pod_table import PodTable
from tests.testbed.procs import free_port
from tests.podtui.tui.helpers import shown

pytestmark = pytest.mark.timeout(180)
PODTUI = str(Path(sys.executable).parent / "podtui")


def podtui(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PODTUI, *args], env=dict(os.environ), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120)


@pytest.fixture
def local_pod(tmp_path, monkeypatch, llama_bin, tiny_model):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    out = podtui("local", "start", "--model", str(tiny_model), "--ctx", "512", "--port",
                 str(free_port()), "--engine-bin-dir", str(llama_bin), "--models-dir",
                 str(tmp_path / "models"))
    assert out.returncode == 0, out.stderr
    yield
    podtui("local", "stop")


async def wait_for(pilot, condition, timeout=30.0):
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"condition not reached; screen {pilot.app.screen!r}, "
                         f"errors: {pilot.app.errors_shown}")


def local_row(app):
    table = app.screen.query_one(PodTable)
    return next((row for row in table.rows_by_key.values() if row.provider == "local"), None)


async def test_local_pod_listed_swapped_logged_and_stopped(local_pod, tiny_model, tiny_model_b):
    app = build_app(refresh_seconds=0.5, offer_first_run=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.screen.query(PodTable) and local_row(app) is not None
                       and local_row(app).status == "RUNNING")
        assert local_row(app).engine_state == "ready" and local_row(app).model
        # the idle figure behind the footer's "idle N min, still billing" comes from the agent
        await wait_for(pilot, lambda: local_row(app).idle_minutes is not None)
        assert 0 <= local_row(app).idle_minutes < 5
        summary = str(app.screen.query_one("#summary").render())
        assert "1 running · $0.00/hr" in summary and "no Runpod API key" in summary

        await pilot.press("m")
        await wait_for(pilot, lambda: shown(app.screen, SwapDialog))
        dialog = app.screen
        dialog.query_one("#model").value = str(tiny_model_b)
        await pilot.press("enter")
        await wait_for(pilot, lambda: dialog.outcome == "ok", timeout=90)
        await pilot.press("escape")

        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen))
        view = app.screen.log_view
        await wait_for(pilot, lambda: view.buffer.total > 0)
        await pilot.press("escape")

        await pilot.press("t")          # no tunnel for this machine: its URL and API key instead
        key = json.loads(podtui("local", "status", "--json").stdout)["api_key"]
        await wait_for(pilot, lambda: any("no tunnel needed" in n.message for n in app._notifications))
        said = next(n.message for n in app._notifications if "no tunnel needed" in n.message)
        assert f"/v1 already; API key {key}" in said
        await wait_for(pilot, lambda: local_row(app).api_key == key)
        await pilot.press("enter")
        assert f"api_key          {key}" in str(app.screen.query_one("#details-text").render())
        await pilot.press("escape")

        await pilot.press("s")
        await wait_for(pilot, lambda: local_row(app) is not None and
                       local_row(app).status == "STOPPED")
