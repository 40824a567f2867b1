"""Host-key, swap and launch flows from the main screen's keys."""

from __future__ import annotations

import pytest

from tests.podtui.tui.helpers import shown
from textual.widgets import Button, Checkbox, Input, ProgressBar, Static

from podtui.errors import PodtuiError
from podtui.tui.app import build_app
from podtui.tui.screens.hostkey import HostKeyDialog
from podtui.tui.screens.launch import LaunchScreen
from podtui.tui.screens.swap import SwapDialog
from podtui.tui.widgets.pod_table import PodTable
from tests.podtui.tui.inprocess import OTHER, PRESENTED, InProcessServices

pytestmark = pytest.mark.timeout(60)


async def wait_for(pilot, condition, timeout=5.0):
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached")


async def open_main(pilot):
    await wait_for(pilot, lambda: pilot.app.screen.query(PodTable)
                   and pilot.app.screen.refreshed_once)


async def open_hostkey(pilot) -> HostKeyDialog:
    await open_main(pilot)
    await pilot.press("v")
    await wait_for(pilot, lambda: shown(pilot.app.screen, HostKeyDialog))
    return pilot.app.screen


async def test_matching_fingerprints_pin_as_verified():
    services = InProcessServices()
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        dialog = await open_hostkey(pilot)
        assert str(dialog.query_one("#presented").render()) == PRESENTED
        assert "match" in str(dialog.query_one("#verdict").render())
        await pilot.click("#pin-verified")
        await wait_for(pilot, lambda: "runpod:abc123" in services.pins)
        assert services.pins["runpod:abc123"] == (PRESENTED, True)


async def test_a_mismatch_is_red_and_cannot_be_accepted():
    services = InProcessServices()
    services.printed = OTHER
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        dialog = await open_hostkey(pilot)
        assert dialog.query_one("#dialog").has_class("danger")
        assert dialog.query_one("#verdict").has_class("bad")
        assert "MISMATCH" in str(dialog.query_one("#verdict").render())
        assert not dialog.query("#pin-verified") and not dialog.query("#pin-unverified")
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert services.pins == {}


async def test_unverified_first_contact_needs_the_warning_ticked():
    services = InProcessServices()
    services.printed = None
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        dialog = await open_hostkey(pilot)
        unverified = dialog.query_one("#pin-unverified", Button)
        assert unverified.disabled and dialog.query_one("#pin-verified", Button).disabled
        assert "Not verified" in str(dialog.query_one("#verdict").render())
        dialog.query_one("#accept-unverified", Checkbox).value = True
        await pilot.pause()
        assert not unverified.disabled
        await pilot.click("#pin-unverified")
        await wait_for(pilot, lambda: "runpod:abc123" in services.pins)
        assert services.pins["runpod:abc123"] == (PRESENTED, False)


async def test_a_pasted_fingerprint_verifies_or_is_refused():
    services = InProcessServices()
    services.printed = None
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        dialog = await open_hostkey(pilot)
        field = dialog.query_one("#pasted", Input)
        field.value = OTHER
        await pilot.pause()
        assert dialog.query_one("#verdict").has_class("bad")
        assert dialog.query_one("#pin-verified", Button).disabled
        field.value = PRESENTED
        await pilot.pause()
        assert not dialog.query_one("#pin-verified", Button).disabled
        await pilot.click("#pin-verified")
        await wait_for(pilot, lambda: services.pins.get("runpod:abc123") == (PRESENTED, True))


async def open_swap(pilot) -> SwapDialog:
    await open_main(pilot)
    await pilot.press("m")
    await wait_for(pilot, lambda: shown(pilot.app.screen, SwapDialog))
    return pilot.app.screen


async def test_swap_picks_a_model_on_the_pod_and_shows_progress_and_result():
    services = InProcessServices()
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 48)) as pilot:
        dialog = await open_swap(pilot)
        assert dialog.query_one("#models").row_count == 2
        dialog.query_one("#models").focus()
        await pilot.press("down", "enter")
        assert dialog.query_one("#model", Input).value == "tiny-b.gguf"
        await pilot.click("#swap")
        await wait_for(pilot, lambda: dialog.outcome == "ok")
        assert ("swap", "runpod:abc123", "tiny-b.gguf") in services.calls
        assert all(dialog.query_one(f"#progress-{p}", ProgressBar).progress == 1.0
                   for p in ("download", "fit", "load"))
        assert "tiny-b.gguf is serving" in str(dialog.query_one("#swap-result").render())


async def test_a_failed_swap_states_the_rollback_in_the_dialog():
    services = InProcessServices()
    services.swap_fails_with = PodtuiError(
        "oom: the new model did not fit in GPU memory; rolled back to tiny-a.gguf, which keeps "
        "serving", "pick a smaller quant or a lower CTX")
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 48)) as pilot:
        dialog = await open_swap(pilot)
        await pilot.press(*"org/big:Q8_0", "enter")
        await wait_for(pilot, lambda: dialog.outcome == "failed")
        text = str(dialog.query_one("#swap-result").render())
        assert "rolled back to tiny-a.gguf" in text and "smaller quant" in text
        assert dialog.query_one("#swap-result").has_class("bad")
        assert app.errors_shown == []      # shown in place, not as a second dialog


async def test_launch_validates_model_and_launches():
    class Launching(InProcessServices):
        def preflight_fit(self, model, gpu_name):
            return f"fits at about 24,576 tokens on {gpu_name}"

        def launch(self, spec, progress):
            self.calls.append(("launch", spec))
            progress("boot", 0.5, "waiting for the pod to print its host keys")
            return "pod llama launched; host key pinned; tunnel on http://127.0.0.1:5002/v1"

    services = Launching()
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_main(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: shown(app.screen, LaunchScreen))
        screen = app.screen
        await pilot.press(*"not a model")
        assert "space" in str(screen.query_one("#model-problem", Static).render())
        await pilot.click("#launch")
        assert "✘" in str(screen.query_one("#launch-progress").render())
        screen.query_one("#model", Input).value = "bartowski/Qwen2.5-7B-GGUF:Q4_K_M"
        screen.query_one("#ctx", Input).value = "0"       # the agent's own rule refuses it
        assert 'ctx must be a positive integer or "auto"' in screen.spec()
        screen.query_one("#ctx", Input).value = "AUTO"    # and reads AUTO as auto
        await wait_for(pilot, lambda: "fits at about 24,576 tokens" in
                       str(screen.query_one("#fit-line").render()), timeout=5)
        await pilot.click("#launch")
        await wait_for(pilot, lambda: any(c[0] == "launch" for c in services.calls))
        spec = next(c[1] for c in services.calls if c[0] == "launch")
        assert spec == {"gpu": "NVIDIA H100 80GB HBM3", "model": "bartowski/Qwen2.5-7B-GGUF:Q4_K_M",
                        "ctx": "auto", "engine": "llama-server", "volume_gb": 50,
                        "idle_stop_minutes": 30}
        await wait_for(pilot, lambda: not isinstance(app.screen, LaunchScreen))
