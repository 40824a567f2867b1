"""Snapshots (pytest-textual-snapshot) of the main, logs, host-key, swap, launch and help screens.

Update deliberately with `pytest tests/podtui/tui/test_snapshots.py --snapshot-update` and review the
SVGs in tests/podtui/tui/__snapshots__/.
"""

from __future__ import annotations

import pytest

from tests.podtui.tui.helpers import shown

from podtui.tui.app import build_app
from podtui.services.follow import IterableFollower
from podtui.tui.widgets.pod_table import PodTable
from tests.podtui.tui.inprocess import OTHER, InProcessServices

pytestmark = pytest.mark.timeout(120)
SIZE = (160, 36)


async def wait_for(pilot, condition, timeout=5.0):
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached")


async def main_ready(pilot):
    await wait_for(pilot, lambda: pilot.app.screen.query(PodTable) and
                   pilot.app.screen.refreshed_once)


def app_with(services=None):
    return build_app(services or InProcessServices(), refresh_seconds=3600)


def test_main_screen(snap_compare):
    assert snap_compare(app_with(), terminal_size=SIZE, run_before=main_ready)


def test_help_screen(snap_compare):
    assert snap_compare(app_with(), terminal_size=(140, 40), press=["question_mark"],
                        run_before=main_ready)


def test_logs_screen_filtered_with_context(snap_compare):
    lines = [("srv  error: failed to allocate CUDA buffer" if n % 9 == 4 else
              f"slot update_slots: id 0 | task {n} | prompt processing progress") for n in range(60)]

    async def run_before(pilot):
        await main_ready(pilot)
        pilot.app.open_logs(IterableFollower(lambda: iter(lines), title="engine log of llama-70b"))
        await pilot.pause()
        await wait_for(pilot, lambda: pilot.app.screen.log_view.buffer.total == 60)
        await pilot.press("slash", *"error", "enter", "x")

    assert snap_compare(app_with(), terminal_size=SIZE, run_before=run_before)


def hostkey_app(printed):
    services = InProcessServices()
    services.printed = printed
    return app_with(services)


async def open_hostkey(pilot):
    from podtui.tui.screens.hostkey import HostKeyDialog

    await main_ready(pilot)
    await pilot.press("v")
    await wait_for(pilot, lambda: shown(pilot.app.screen, HostKeyDialog))
    pilot.app.clear_notifications()


def test_hostkey_mismatch(snap_compare):
    assert snap_compare(hostkey_app(OTHER), terminal_size=SIZE, run_before=open_hostkey)


def test_hostkey_unverified_first_contact(snap_compare):
    assert snap_compare(hostkey_app(None), terminal_size=SIZE, run_before=open_hostkey)


def test_swap_dialog(snap_compare):
    async def run_before(pilot):
        from podtui.tui.screens.swap import SwapDialog

        await main_ready(pilot)
        await pilot.press("m")
        await wait_for(pilot, lambda: shown(pilot.app.screen, SwapDialog))
        await pilot.press(*"bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M")

    assert snap_compare(app_with(), terminal_size=(140, 40), run_before=run_before)


def test_launch_screen(snap_compare):
    async def run_before(pilot):
        from podtui.tui.screens.launch import LaunchScreen

        await main_ready(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: shown(pilot.app.screen, LaunchScreen))
        await pilot.press(*"org/repo Q4")

    assert snap_compare(app_with(), terminal_size=(140, 40), run_before=run_before)
