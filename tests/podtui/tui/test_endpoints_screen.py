"""The endpoints section's keys against in-process services: which table the keys act on, details."""

from __future__ import annotations

import pytest

from podtui.tui.app import build_app
from podtui.tui.screens.details import RowDetails
from podtui.tui.widgets.endpoint_panel import EndpointsPanel
from podtui.tui.widgets.endpoint_table import EndpointTable
from podtui.tui.widgets.pod_table import PodTable
from tests.podtui.tui.inprocess import EndpointsInProcess, InProcessServices

pytestmark = pytest.mark.timeout(60)


async def wait_for(pilot, condition, timeout=5.0):
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached")


async def endpoints_focused(pilot):
    await wait_for(pilot, lambda: pilot.app.screen.query(EndpointsPanel)
                   and pilot.app.screen.query_one(EndpointsPanel).refreshed_once)
    await pilot.press("tab")
    assert isinstance(pilot.app.focused, EndpointTable)


async def test_pod_keys_do_nothing_while_the_endpoints_table_has_focus():
    services = EndpointsInProcess()
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(170, 45)) as pilot:
        await endpoints_focused(pilot)
        await pilot.press("s", "r", "c")                 # stop, resume, context fit: pods only
        await pilot.pause(0.2)
        assert not [call for call in services.calls if call[0] in ("stop", "resume")]
        keys = {key for key, active in app.screen.active_bindings.items() if active.enabled}
        assert {"w", "t", "l", "k", "D"} <= keys and not {"s", "r", "v", "m", "c"} & keys
        await pilot.press("shift+tab")
        assert isinstance(app.focused, PodTable)
        await pilot.press("s")
        await wait_for(pilot, lambda: ("stop", "runpod:abc123") in services.calls)


async def test_enter_on_an_endpoint_shows_its_details_and_warnings():
    app = build_app(EndpointsInProcess(), refresh_seconds=60)
    async with app.run_test(size=(170, 45)) as pilot:
        await endpoints_focused(pilot)
        await pilot.press("down", "down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RowDetails))
        text = str(app.screen.query_one("#details-text").render())
        assert app.screen.row.key == "epold00001" and "max workers is 0" in text and "workers_max      0" in text


async def test_services_without_endpoints_show_no_section():
    app = build_app(InProcessServices(), refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: app.screen.refreshed_once)
        assert not app.screen.query(EndpointsPanel)
