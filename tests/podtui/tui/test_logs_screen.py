"""The logs screen in a running app: follow, pause, filter, inverse, context, wrap, save."""

from __future__ import annotations

import queue
import threading

import pytest

from podtui.tui.app import build_app
from podtui.services.follow import FileFollower, LineFollower
from podtui.tui.screens.logs import LogsScreen
from tests.podtui.tui.inprocess import InProcessServices

pytestmark = pytest.mark.timeout(60)


class QueueFollower(LineFollower):
    """Lines the test puts in a queue arrive as a live source would send them."""

    title = "live"

    def __init__(self) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.stopped = threading.Event()

    def follow(self, emit, stop) -> None:
        while not stop.is_set():
            try:
                emit([self.lines.get(timeout=0.02)])
            except queue.Empty:
                continue
        self.stopped.set()


async def wait_for(pilot, condition, timeout=5.0):
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached")


async def open_logs(pilot, source) -> LogsScreen:
    pilot.app.open_logs(source)
    await pilot.pause()
    return pilot.app.screen


async def test_follows_live_lines_and_pause_keeps_the_reader_in_place(tmp_path):
    app = build_app(InProcessServices(), refresh_seconds=60)
    source = QueueFollower()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_logs(pilot, source)
        view = screen.log_view
        for n in range(200):
            source.lines.put(f"line {n}")
        await wait_for(pilot, lambda: view.buffer.total == 200)
        assert view.following and view.scroll_offset.y == view.max_scroll_y
        await pilot.press("space")
        assert not view.following
        await pilot.press("home")
        top = view.scroll_offset.y
        for n in range(200, 300):
            source.lines.put(f"line {n}")
        await wait_for(pilot, lambda: view.buffer.total == 300)
        assert view.scroll_offset.y == top == 0
        assert "PAUSED" in screen.status_text()
        await pilot.press("G")
        await pilot.pause()
        assert view.following and view.scroll_offset.y == view.max_scroll_y
        await pilot.press("escape")
        await wait_for(pilot, source.stopped.is_set)   # leaving the screen stops the watcher


async def test_filter_inverse_context_wrap_and_save(tmp_path):
    app = build_app(InProcessServices(), refresh_seconds=60, save_dir=tmp_path / "saved")
    source = QueueFollower()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_logs(pilot, source)
        view = screen.log_view
        for n in range(40):
            source.lines.put("slot 0: error decoding" if n in (10, 30) else f"GET /health {n}")
        await wait_for(pilot, lambda: view.buffer.total == 40)

        await pilot.press("slash", *"error")
        assert [view.buffer.row(i)[1] for i in range(len(view.buffer))] == \
            ["slot 0: error decoding"] * 2
        assert "filter 'error' (2 matched)" in screen.status_text()
        await pilot.press("enter")
        assert view.has_focus

        await pilot.press("x")     # keep context: 3 lines either side
        assert len(view.buffer) == 14
        await pilot.press("x")
        assert len(view.buffer) == 2

        await pilot.press("slash", "ctrl+a", "ctrl+k", *"!/health", "enter")
        assert len(view.buffer) == 2 and "hiding" in screen.status_text()

        await pilot.press("w")
        assert view.wrap and "wrap" in screen.status_text()

        await pilot.press("s")
        saved_dir = tmp_path / "saved"
        await wait_for(pilot, lambda: saved_dir.exists() and any(saved_dir.iterdir()))
        saved = next(saved_dir.iterdir()).read_text().splitlines()
        assert saved == ["slot 0: error decoding"] * 2

        await pilot.press("slash", "escape")   # escape in the field clears the filter
        assert len(view.buffer) == 40


async def test_wrap_shows_a_long_line_whole_on_several_rows():
    app = build_app(InProcessServices(), refresh_seconds=60)
    source = QueueFollower()
    async with app.run_test(size=(60, 20)) as pilot:
        screen = await open_logs(pilot, source)
        view = screen.log_view
        source.lines.put("A" * 50 + "B" * 50 + "C" * 20)
        await wait_for(pilot, lambda: view.buffer.total == 1)
        await pilot.press("w")
        await pilot.pause()
        text = "".join(view.render_line(y).text for y in range(view.size.height))
        assert "A" * 50 in text and "B" * 50 in text and "C" * 20 in text


async def test_memory_stays_bounded_under_a_long_run():
    app = build_app(InProcessServices(), refresh_seconds=60, log_capacity=2_000)
    lines = (f"line {n}" for n in range(100_000))

    class Fast(LineFollower):
        title = "fast"

        def follow(self, emit, stop):
            batch = []
            for line in lines:
                batch.append(line)
                if len(batch) == 1000:
                    emit(batch)
                    batch = []

    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_logs(pilot, Fast())
        view = screen.log_view
        await wait_for(pilot, lambda: view.buffer.total + view.dropped == 100_000, timeout=20)
        assert len(view.buffer) == 2_000
        assert view.buffer.row(len(view.buffer) - 1)[1] == "line 99999"


async def test_file_follower_tails_and_follows_appends(tmp_path):
    log = tmp_path / "engine.log"
    log.write_text("".join(f"old {n}\n" for n in range(10)))
    app = build_app(InProcessServices(), refresh_seconds=60)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_logs(pilot, FileFollower(log, last=5, poll_seconds=0.05))
        view = screen.log_view
        await wait_for(pilot, lambda: view.buffer.total == 5)
        with log.open("a") as handle:
            handle.write("new line\n")
        await wait_for(pilot, lambda: view.buffer.total == 6)
        assert view.buffer.row(5)[1] == "new line"


async def test_a_source_that_fails_shows_the_error_with_its_fix():
    app = build_app(InProcessServices(), refresh_seconds=60)
    from podtui.services.front import TuiServices

    async with app.run_test(size=(100, 30)) as pilot:
        pilot.app.open_logs(TuiServices().log_follower("runpod:abc"))
        await wait_for(pilot, lambda: app.errors_shown)
        title, fix = app.errors_shown[-1]
        assert "not available" in title and "podtui command" in fix
