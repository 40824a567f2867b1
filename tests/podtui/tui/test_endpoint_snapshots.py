"""Snapshots of the main screen with Runpod Serverless endpoints under the pods, and of the typed-name
confirmation for deleting one (review the SVGs in __snapshots__/test_endpoint_snapshots/)."""

from __future__ import annotations

import pytest

from tests.podtui.tui.helpers import shown

from podtui.tui.app import build_app
from podtui.tui.widgets.endpoint_panel import EndpointsPanel
from podtui.tui.widgets.endpoint_table import EndpointTable
from podtui.tui.widgets.pod_table import PodTable
from tests.podtui.tui.inprocess import EndpointsInProcess

pytestmark = pytest.mark.timeout(120)
SIZE = (170, 40)


async def wait_for(pilot, condition, timeout=5.0):
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached")


async def both_listed(pilot):
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.query(PodTable) and screen.refreshed_once
                   and screen.query_one(EndpointsPanel).refreshed_once)


async def endpoints_focused(pilot):
    await both_listed(pilot)
    await pilot.press("tab")
    await wait_for(pilot, lambda: isinstance(pilot.app.focused, EndpointTable))


def app_with_endpoints():
    return build_app(EndpointsInProcess(), refresh_seconds=3600)


def test_main_screen_with_endpoints(snap_compare):
    """The endpoints table has focus: its keys in the footer, the pod-only keys hidden."""
    assert snap_compare(app_with_endpoints(), terminal_size=SIZE, run_before=endpoints_focused)


def test_delete_endpoint_confirmation(snap_compare):
    async def run_before(pilot):
        from podtui.tui.screens.confirm_delete_endpoint import ConfirmDeleteEndpoint

        await endpoints_focused(pilot)
        await pilot.press("D")
        await wait_for(pilot, lambda: shown(pilot.app.screen, ConfirmDeleteEndpoint))
        await pilot.press(*"llama")

    assert snap_compare(app_with_endpoints(), terminal_size=SIZE, run_before=run_before)
