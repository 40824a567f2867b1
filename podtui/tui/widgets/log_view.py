"""A virtual-scrolling log widget: renders only the rows on screen, holds a bounded buffer.

Textual's `Log` keeps every line and grows without limit; a pod's engine log runs for days. This
widget keeps a `LogBuffer` (a ring of the newest lines and the filtered view) and draws rows through
the line API, so a frame costs the same with 100 lines or 100,000. Lines come from any thread via
`feed()`, which queues them (bounded) and wakes the widget with one merged message.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from podtui.tui.log_buffer import DEFAULT_CAPACITY, LineKind, LogBuffer
from podtui.tui.messages import LogLinesPending

# Time one wake-up may spend moving lines from the intake into the buffer: bounds how long the
# handler holds the event loop, so a firehose cannot make a frame late; the rest waits a turn.
DRAIN_SECONDS = 0.015
DRAIN_SLICE = 1024


class LogView(ScrollView, can_focus=True):
    """Shows a LogBuffer's view; follows the end unless paused."""

    COMPONENT_CLASSES = {"log-view--match", "log-view--context"}
    DEFAULT_CSS = """
    LogView { background: $surface; }
    LogView > .log-view--match { background: $warning 60%; color: $text; text-style: bold; }
    LogView > .log-view--context { color: $text-muted; }
    """
    BINDINGS = [
        Binding("up,k", "line_up", "Up", show=False),
        Binding("down,j", "line_down", "Down", show=False),
        Binding("pageup", "page_up_pause", "Page up", show=False),
        Binding("pagedown", "page_down_keep", "Page down", show=False),
        Binding("home,g", "top", "Top", show=False),
        Binding("end,G", "bottom", "End", show=False),
        Binding("left,h", "scroll_left", "Left", show=False),
        Binding("right,l", "scroll_right", "Right", show=False),
    ]

    following: reactive[bool] = reactive(True)
    wrap: reactive[bool] = reactive(False)

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.buffer = LogBuffer(capacity)
        self._intake: deque[list[str]] = deque()
        self._intake_lines = 0
        self._intake_lock = threading.Lock()
        self._wake_posted = False
        self.dropped = 0            # lines lost because the screen could not keep up
        self._generation = 0        # bumped when filter/context change: invalidates cached strips
        self._strips: LRUCache[tuple[int, int], Strip] = LRUCache(2048)
        self._wrapped_key: tuple | None = None
        self._wrapped_rows: list[Strip] = []

    # ---- intake (any thread) -------------------------------------------------------------------
    def feed(self, lines: list[str]) -> None:
        """Queue lines from any thread. Bounded: if the screen falls a whole buffer behind, the
        oldest queued lines are dropped (they would have left the ring anyway) and counted."""
        with self._intake_lock:
            self._intake.append(lines)
            self._intake_lines += len(lines)
            while self._intake_lines > self.buffer.capacity and len(self._intake) > 1:
                lost = self._intake.popleft()
                self._intake_lines -= len(lost)
                self.dropped += len(lost)
            if self._wake_posted:
                return
            self._wake_posted = True
        self.post_message(LogLinesPending())

    def on_log_lines_pending(self, message: LogLinesPending) -> None:
        message.stop()
        with self._intake_lock:     # one short hold: the follower thread is never kept waiting
            taken = list(self._intake)
            self._intake.clear()
            self._intake_lines = 0
        removed = 0
        deadline = time.perf_counter() + DRAIN_SECONDS
        while taken and time.perf_counter() < deadline:
            batch = taken.pop(0)
            if len(batch) > DRAIN_SLICE:   # keep each step short; the rest goes back first
                taken.insert(0, batch[DRAIN_SLICE:])
                batch = batch[:DRAIN_SLICE]
            removed += self.buffer.extend(batch)
        with self._intake_lock:
            if taken:
                self._intake.extendleft(reversed(taken))
                self._intake_lines += sum(len(batch) for batch in taken)
            else:
                self._wake_posted = bool(self._intake)
        if taken or self._wake_posted:
            # Lines still queued: come back after the loop has drawn a frame and run everything
            # else that is due (posting straight away would not yield to the loop).
            asyncio.get_running_loop().call_soon(self.post_message, LogLinesPending())
        self._content_changed(removed)

    @property
    def pending_lines(self) -> int:
        with self._intake_lock:
            return self._intake_lines

    # ---- view settings -------------------------------------------------------------------------
    def set_filter(self, text: str) -> None:
        self.buffer.set_filter(text)
        self._reset_view()

    def set_context(self, lines: int) -> None:
        self.buffer.set_context(lines)
        self._reset_view()

    def _reset_view(self) -> None:
        self._generation += 1
        self._strips.clear()
        self._content_changed(0)
        if not self.following:
            self._scroll_y_to(0)

    def watch_wrap(self) -> None:
        self._content_changed(0)

    def watch_following(self, following: bool) -> None:
        if following:
            self._content_changed(0)

    def on_resize(self, event: events.Resize) -> None:
        self._content_changed(0)

    def _content_changed(self, rows_removed_at_top: int) -> None:
        width = self.scrollable_content_region.width if self.wrap else self.buffer.longest
        self.virtual_size = Size(width, len(self.buffer))
        if self.following:
            self._scroll_y_to(self.max_scroll_y)
        elif rows_removed_at_top:
            # Keep a paused reader on the same line while old lines leave the ring.
            self._scroll_y_to(max(0, self.scroll_y - rows_removed_at_top))
        self._wrapped_key = None
        self.refresh()

    def _scroll_y_to(self, y: float) -> None:
        # force: the scrollbars may not be laid out yet right after the content grew.
        self.scroll_to(y=y, animate=False, immediate=True, force=True)

    # ---- keys ----------------------------------------------------------------------------------
    def action_line_up(self) -> None:
        self.following = False
        self._scroll_y_to(self.scroll_y - 1)

    def action_line_down(self) -> None:
        self._scroll_y_to(self.scroll_y + 1)

    def action_page_up_pause(self) -> None:
        self.following = False
        self._scroll_y_to(self.scroll_y - self.scrollable_content_region.height)

    def action_page_down_keep(self) -> None:
        self._scroll_y_to(self.scroll_y + self.scrollable_content_region.height)

    def action_top(self) -> None:
        self.following = False
        self._scroll_y_to(0)

    def action_bottom(self) -> None:
        self.following = True

    def _on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.following = False

    # ---- rendering -----------------------------------------------------------------------------
    def _row_strip(self, index: int) -> Strip:
        absolute, text, kind = self.buffer.row(index)
        key = (absolute, self._generation)
        cached = self._strips.get(key)
        if cached is not None:
            return cached
        base = self.rich_style
        if kind is LineKind.CONTEXT:
            base = base + self.get_component_rich_style("log-view--context", partial=True)
        segments: list[Segment] = []
        position = 0
        spans = self.buffer.highlight_spans(text) if kind is LineKind.MATCH else []
        if spans:
            match_style = base + self.get_component_rich_style("log-view--match", partial=True)
            for start, end in spans:
                if start > position:
                    segments.append(Segment(text[position:start], base))
                segments.append(Segment(text[start:end], match_style))
                position = end
        if position < len(text):
            segments.append(Segment(text[position:], base))
        strip = Strip(segments)
        self._strips[key] = strip
        return strip

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if self.wrap:
            rows = self._wrapped_layout()
            return rows[y] if y < len(rows) else Strip.blank(width, self.rich_style)
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        if index >= len(self.buffer):
            return Strip.blank(width, self.rich_style)
        return self._row_strip(index).crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def _wrapped_layout(self) -> list[Strip]:
        """Rows on screen in wrap mode: from the top row at scroll_y downwards, or anchored to
        the bottom when following (so the newest line is always whole and visible)."""
        region = self.scrollable_content_region
        width, height = max(1, region.width), region.height
        at_end = self.following or self.scroll_offset.y >= self.max_scroll_y
        key = (self.scroll_offset.y, width, height, self.buffer.total, len(self.buffer),
               self._generation, at_end)
        if key == self._wrapped_key:
            return self._wrapped_rows
        total = len(self.buffer)
        rows: list[Strip] = []
        if at_end:
            index = total - 1
            while index >= 0 and len(rows) < height:
                rows[0:0] = self._wrap(self._row_strip(index), width)
                index -= 1
            rows = rows[-height:]
        else:
            index = self.scroll_offset.y
            while index < total and len(rows) < height:
                rows.extend(self._wrap(self._row_strip(index), width))
                index += 1
            rows = rows[:height]
        self._wrapped_rows = [row.extend_cell_length(width, self.rich_style) for row in rows]
        self._wrapped_key = key
        return self._wrapped_rows

    @staticmethod
    def _wrap(strip: Strip, width: int) -> list[Strip]:
        length = strip.cell_length
        if length <= width:
            return [strip]
        return list(strip.divide(range(width, length + width, width)))
