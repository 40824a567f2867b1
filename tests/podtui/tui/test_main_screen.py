"""The main screen: live table, costs and idle warnings, filter, pod actions, never freezing."""

from __future__ import annotations

import time

import pytest
from textual.widgets import Button

from podtui.tui.app import build_app
from podtui.tui.screens.confirm_terminate import ConfirmTerminate
from podtui.tui.screens.details import PodDetails
from podtui.tui.screens.error_dialog import ErrorDialog
from podtui.tui.screens.help import HelpScreen
from podtui.tui.screens.logs import LogsScreen
from podtui.services.front import TuiServices
from podtui.tui.widgets.pod_table import PodTable
from tests.podtui.tui.inprocess import InProcessServices

pytestmark = pytest.mark.timeout(60)


async def wait_for(pilot, condition, timeout=5.0):
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached")


def table_names(app) -> list[str]:
    table = app.screen.query_one(PodTable)
    return [table.get_row_at(i)[0] for i in range(table.row_count)]


async def started(pilot):
    await wait_for(pilot, lambda: pilot.app.screen.query(PodTable) and
                   pilot.app.screen.refreshed_once)


async def test_lists_pods_with_costs_and_idle_warning():
    app = build_app(InProcessServices(), refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot)
        assert table_names(app) == ["llama-70b", "qwen-small", "homebox"]
        summary = str(app.screen.query_one("#summary").render())
        assert "2 running · $2.69/hr" in summary
        assert "llama-70b idle 45 min" in summary
        row = app.screen.query_one(PodTable).get_row_at(0)
        assert row[4] == "$2.69" and row[5] == "3h02m" and row[9] == "http://127.0.0.1:5002/v1"


async def test_refresh_is_live():
    services = InProcessServices()
    app = build_app(services, refresh_seconds=0.1)
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot)
        services.pods.pop("runpod:def456")
        await wait_for(pilot, lambda: table_names(app) == ["llama-70b", "homebox"])


async def test_slash_filters_and_escape_clears():
    app = build_app(InProcessServices(), refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot)
        await pilot.press("slash", *"ssh")
        assert table_names(app) == ["homebox"]
        await pilot.press("enter", "escape")
        assert table_names(app) == ["llama-70b", "qwen-small", "homebox"]


async def test_stop_resume_and_terminate_after_typing_the_name():
    services = InProcessServices()
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot)
        await pilot.press("s")
        await wait_for(pilot, lambda: ("stop", "runpod:abc123") in services.calls)
        await wait_for(pilot, lambda: "EXITED" in str(app.screen.query_one(PodTable)
                                                     .get_row_at(0)[2]))
        await pilot.press("r")
        await wait_for(pilot, lambda: ("resume", "runpod:abc123") in services.calls)

        await pilot.press("D")
        assert isinstance(app.screen, ConfirmTerminate)
        button = app.screen.query_one("#terminate", Button)
        await pilot.press(*"llama-7")
        assert button.disabled
        await pilot.press("enter")                     # wrong name: nothing happens
        assert isinstance(app.screen, ConfirmTerminate)
        await pilot.press("0", "b")
        assert not button.disabled
        await pilot.press("enter")
        await wait_for(pilot, lambda: ("terminate", "runpod:abc123") in services.calls)
        await wait_for(pilot, lambda: table_names(app) == ["qwen-small", "homebox"])


async def test_escape_cancels_terminate():
    services = InProcessServices()
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot)
        await pilot.press("D", "escape")
        await pilot.pause(0.1)
        assert not any(call[0] == "terminate" for call in services.calls)


async def test_a_failed_action_shows_one_dialog_with_the_fix():
    app = build_app(InProcessServices(), refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot)
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        assert app.errors_shown == [("local port 5002 is busy",
                                     "stop what listens there or pick -L 5003")]
        await pilot.press("escape")
        assert not isinstance(app.screen, ErrorDialog)


async def test_a_stalled_provider_never_blocks_keys_or_quitting():
    services = InProcessServices()
    services.block_listing.set()               # list_pods blocks until released — never, here
    app = build_app(services, refresh_seconds=0.05)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause(0.3)
        assert "loading pods" in str(app.screen.query_one("#summary").render())
        assert services.calls.count(("list_pods",)) == 1   # refreshes do not pile up
        started_at = time.monotonic()
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen))
        await pilot.press("escape", "slash", *"abc", "escape")
        assert time.monotonic() - started_at < 2
        await pilot.press("q")
    assert app.return_code == 0 or app.return_code is None


async def test_help_lists_every_key():
    app = build_app(InProcessServices(), refresh_seconds=60)
    async with app.run_test(size=(160, 48)) as pilot:
        await started(pilot)
        await pilot.press("question_mark")
        text = str(app.screen.query_one("#help-text").render())
        for key in ("n", "s", "r", "D", "t", "v", "m", "c", "l", "enter", "/", "q"):
            assert f"  {key} " in text


async def test_enter_shows_details():
    app = build_app(InProcessServices(), refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot)
        await pilot.press("down", "down", "enter")
        assert isinstance(app.screen, PodDetails) and app.screen.row.name == "homebox"
        await pilot.press("escape", "up", "up", "enter")
        text = str(app.screen.query_one("#details-text").render())
        assert "idle             45 min" in text and "uptime           3h" in text
        assert "$2.69/hr" in text and "uptime_s" not in text and "idle_minutes" not in text


async def test_an_action_the_services_lack_says_so_instead_of_pretending():
    app = build_app(TuiServices(), refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot)
        assert "no pod providers in this podtui" in str(app.screen.query_one("#summary").render())
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        assert app.errors_shown[-1][0] == "launch is not available in this podtui"


async def test_logs_key_opens_the_selected_pods_log():
    app = build_app(InProcessServices(), refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot)
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen))
        assert app.screen.source.title == "logs of runpod:abc123"
        await wait_for(pilot, lambda: app.screen.log_view.buffer.total == 50)
        await pilot.press("escape")
        assert isinstance(app.screen.query_one(PodTable), PodTable)
