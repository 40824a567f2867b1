"""The logs screen: follow a source live, pause, filter (`!` inverts), keep context, wrap, save."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from podtui import paths
from podtui.tui.host import Hosted
from podtui.services.follow import LineFollower
from podtui.tui.log_buffer import DEFAULT_CAPACITY
from podtui.tui.messages import LogSourceEnded
from podtui.tui.widgets.log_view import LogView

CONTEXT_LINES = 3


class LogsScreen(Hosted, Screen[None]):
    CSS_PATH = "logs.tcss"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("space", "toggle_follow", "Pause/follow"),
        Binding("slash", "filter", "Filter"),
        Binding("x", "toggle_context", "Context"),
        Binding("w", "toggle_wrap", "Wrap"),
        Binding("s", "save", "Save"),
    ]

    def __init__(self, source: LineFollower, *, capacity: int = DEFAULT_CAPACITY,
                 save_dir: Path | None = None) -> None:
        super().__init__()
        self.source = source
        self.capacity = capacity
        self.save_dir = save_dir
        self._stop = threading.Event()
        self.source_ended = ""

    def compose(self) -> ComposeResult:
        yield Static(self.source.title, id="log-title", markup=False)
        yield LogView(self.capacity, id="log")
        yield Input(placeholder="filter: text shows matching lines, !text hides them; "
                                "enter keeps it, escape clears", id="log-filter")
        yield Static("", id="log-status", markup=False)
        yield Footer()

    @property
    def log_view(self) -> LogView:
        return self.query_one(LogView)

    def on_mount(self) -> None:
        self.query_one("#log-filter").display = False
        self.log_view.focus()
        self.follow_source()
        self.set_interval(0.25, self.update_status)
        self.update_status()

    def on_unmount(self) -> None:
        self._stop.set()

    def follow_source(self) -> None:
        """One watcher thread owns the source; the stop Event (set in on_unmount) ends it."""
        self.app_host.run_service(self.source.follow, self.log_view.feed, self._stop,
                             name=f"follow {self.source.title}", group="log-follower",
                             on_done=self._source_returned)

    def _source_returned(self, _result: object) -> None:
        if not self._stop.is_set():
            self.post_message(LogSourceEnded())

    def on_log_source_ended(self, message: LogSourceEnded) -> None:
        self.source_ended = message.reason
        self.update_status()

    # ---- status --------------------------------------------------------------------------------
    def status_text(self) -> str:
        view = self.log_view
        buffer = view.buffer
        parts = ["FOLLOWING" if view.following else "PAUSED",
                 f"{len(buffer):,} shown / {buffer.total:,} lines"]
        if buffer.filter.active:
            kind = "hiding" if buffer.filter.inverse else "filter"
            parts.append(f"{kind} {buffer.filter.needle!r} ({buffer.matches:,} matched)")
        if buffer.context:
            parts.append(f"context ±{buffer.context}")
        if view.wrap:
            parts.append("wrap")
        if buffer.total > buffer.capacity:
            parts.append(f"keeping newest {buffer.capacity:,}")
        if view.dropped:
            parts.append(f"{view.dropped:,} dropped (screen behind)")
        if self.source_ended:
            parts.append(self.source_ended)
        return " · ".join(parts)

    def update_status(self) -> None:
        self.query_one("#log-status", Static).update(self.status_text())

    # ---- actions -------------------------------------------------------------------------------
    def action_back(self) -> None:
        field = self.query_one("#log-filter", Input)
        if field.display and field.has_focus:
            self._close_filter(clear=True)
            return
        self.app.pop_screen()

    def action_toggle_follow(self) -> None:
        self.log_view.following = not self.log_view.following
        self.update_status()

    def action_filter(self) -> None:
        field = self.query_one("#log-filter", Input)
        field.display = True
        field.value = self.log_view.buffer.filter.text
        field.focus()

    @on(Input.Changed, "#log-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.log_view.set_filter(event.value)
        self.update_status()

    @on(Input.Submitted, "#log-filter")
    def filter_submitted(self, event: Input.Submitted) -> None:
        self._close_filter(clear=False)

    def _close_filter(self, *, clear: bool) -> None:
        field = self.query_one("#log-filter", Input)
        if clear:
            field.value = ""
            self.log_view.set_filter("")
        field.display = False
        self.log_view.focus()
        self.update_status()

    def action_toggle_context(self) -> None:
        view = self.log_view
        view.set_context(0 if view.buffer.context else CONTEXT_LINES)
        self.update_status()

    def action_toggle_wrap(self) -> None:
        self.log_view.wrap = not self.log_view.wrap
        self.update_status()

    def action_save(self) -> None:
        rows = self.log_view.buffer.view_rows()   # snapshot on the UI thread; write in a worker
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", self.source.title).strip("-") or "log"
        target = (self.save_dir or paths.log_dir()) / f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        self.save_rows(rows, target)

    def save_rows(self, rows: list[str], target: Path) -> None:
        def write() -> Path:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
            return target

        self.app_host.run_service(write, name="save log", group="log-save",
                             on_done=lambda path: self.notify(
                                 f"Saved {len(rows):,} lines to {path}", title="Log saved"))
