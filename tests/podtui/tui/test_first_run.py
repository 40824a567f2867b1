"""First run with no Runpod key: the key is stored 0600 and the providers come up; or carry on."""

from __future__ import annotations

import stat

import pytest
from textual.widgets import Input

from podtui import paths
from podtui.tui.app import build_app
from podtui.services.dashboard import ProviderServices
from podtui.tui.screens.first_run import FirstRunScreen
from podtui.tui.screens.main import MainScreen

pytestmark = pytest.mark.timeout(60)
KEY = "rpa_FIRSTRUN_TEST_KEY_0123456789abcdef"


async def wait_for(pilot, condition, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"condition not reached; errors: {pilot.app.errors_shown}")


@pytest.fixture
def no_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PODTUI_RUNPOD_API_URL", "http://127.0.0.1:9")   # nothing listens there


async def test_the_key_is_stored_0600_and_runpod_is_wired(no_key):
    app = build_app(refresh_seconds=60)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, FirstRunScreen))
        await pilot.press(*"short", "enter")
        assert "does not look like" in str(app.screen.query_one("#key-problem").render())
        app.screen.query_one("#api-key", Input).value = KEY
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.services, ProviderServices) and any(
            s.provider.name == "runpod" for s in app.services.services))
        assert isinstance(app.screen, MainScreen)
        config = paths.config_file()
        assert KEY in config.read_text()
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert KEY not in str(app.screen.query_one("#summary").render())


async def test_carry_on_without_a_key(no_key):
    app = build_app(refresh_seconds=60)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, FirstRunScreen))
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        await wait_for(pilot, lambda: "no Runpod API key" in
                       str(app.screen.query_one("#summary").render()))
        summary = str(app.screen.query_one("#summary").render())
        # one short line, not the CLI's whole how-to (the dialog just said it)
        assert "podtui asks for one at start" in summary and "[runpod]" not in summary
        assert not paths.config_file().exists()


async def test_a_readable_config_holding_the_key_is_named_in_the_footer(no_key, monkeypatch):
    monkeypatch.setenv("PODTUI_RUNPOD_BACKOFF_S", "0.01")   # the dead API URL fails fast
    config = paths.config_file()
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[runpod]\napi_key = "{KEY}"\n')
    config.chmod(0o644)
    app = build_app(refresh_seconds=60)
    async with app.run_test(size=(200, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen) and "readable by other users"
                       in str(app.screen.query_one("#summary").render()), timeout=40)
        assert KEY not in str(app.screen.query_one("#summary").render())
