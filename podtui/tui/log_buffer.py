"""A bounded buffer of log lines with a filtered view, kept incrementally as lines arrive.

Memory stays flat however long a log runs: the newest `capacity` lines are kept in a ring and
everything else is forgotten. The view (which lines are shown under the current filter) is a deque
of absolute line numbers updated per line, so a filter costs one regex search per arriving line,
not a rescan of the buffer on every frame.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from enum import Enum

DEFAULT_CAPACITY = 100_000
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


class LineKind(Enum):
    PLAIN = "plain"      # no filter: every line is shown
    MATCH = "match"      # passes the filter
    CONTEXT = "context"  # shown only because it is near a match (keep-context mode)


@dataclass(frozen=True)
class LineFilter:
    """What the user typed: text to find, `!text` to hide lines containing it (inverse).

    Matching is literal and smart-case (case-insensitive unless the text has a capital letter),
    which is what people expect from a log filter; a regex typo cannot hide every line.
    """

    text: str = ""

    @property
    def inverse(self) -> bool:
        return self.text.startswith("!")

    @property
    def needle(self) -> str:
        return self.text[1:] if self.inverse else self.text

    @property
    def active(self) -> bool:
        return bool(self.needle)

    def compiled(self) -> re.Pattern[str] | None:
        if not self.active:
            return None
        flags = 0 if any(c.isupper() for c in self.needle) else re.IGNORECASE
        return re.compile(re.escape(self.needle), flags)


def clean_line(line: str) -> str:
    """Strip colour codes, trailing newlines and tabs, which would corrupt a cell-based render."""
    line = line.rstrip("\r\n")
    if "\x1b" in line:
        line = ANSI_ESCAPE.sub("", line)
    if "\t" in line:
        line = line.expandtabs(4)
    return line


class LogBuffer:
    """The newest `capacity` lines plus the view of them under a filter and context setting."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._lines: deque[str] = deque(maxlen=capacity)
        self.first = 0          # absolute number of the oldest line still held
        self.total = 0          # lines ever received
        self.longest = 0        # longest line seen (characters), for horizontal scrolling
        self.filter = LineFilter()
        self.context = 0        # lines shown either side of a match (0: off)
        self._pattern: re.Pattern[str] | None = None
        self._view: deque[int] = deque()   # absolute line numbers, only while a filter is active
        self._last_viewed = -1
        self._after_left = 0
        self.matches = 0        # lines that passed the filter since it was set

    # ---- reading -------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Rows in the view."""
        return len(self._view) if self._pattern else len(self._lines)

    def line(self, absolute: int) -> str:
        return self._lines[absolute - self.first]

    def row(self, index: int) -> tuple[int, str, LineKind]:
        """The view's row `index`: (absolute line number, text, kind)."""
        if not self._pattern:
            return self.first + index, self._lines[index], LineKind.PLAIN
        absolute = self._view[index]
        text = self._lines[absolute - self.first]
        return absolute, text, LineKind.MATCH if self._passes(text) else LineKind.CONTEXT

    def highlight_spans(self, text: str) -> list[tuple[int, int]]:
        """Where the filter text occurs in `text` (nothing to highlight for an inverse filter)."""
        if not self._pattern or self.filter.inverse:
            return []
        return [m.span() for m in self._pattern.finditer(text)]

    def view_rows(self) -> list[str]:
        """Every row of the view, oldest first (for saving)."""
        return [self.row(i)[1] for i in range(len(self))]

    # ---- writing -------------------------------------------------------------------------------
    def extend(self, lines: list[str]) -> int:
        """Add lines; returns how many rows fell off the top of the view (to keep a paused
        reader's place)."""
        for raw in lines:
            line = clean_line(raw)
            self._lines.append(line)
            if len(line) > self.longest:
                self.longest = len(line)
            absolute = self.total
            self.total += 1
            if self._pattern:
                self._view_add(absolute, line)
        dropped_lines = self.total - len(self._lines) - self.first
        if dropped_lines <= 0:
            return 0
        self.first += dropped_lines
        if not self._pattern:
            return dropped_lines
        removed = 0
        while self._view and self._view[0] < self.first:
            self._view.popleft()
            removed += 1
        return removed

    def set_filter(self, text: str) -> None:
        self.filter = LineFilter(text)
        self._rebuild()

    def set_context(self, lines: int) -> None:
        self.context = max(0, lines)
        self._rebuild()

    def clear(self) -> None:
        self._lines.clear()
        self.first = self.total
        self._rebuild()

    # ---- internals -----------------------------------------------------------------------------
    def _passes(self, text: str) -> bool:
        found = self._pattern.search(text) is not None  # type: ignore[union-attr]
        return not found if self.filter.inverse else found

    def _view_add(self, absolute: int, text: str) -> None:
        if self._passes(text):
            self.matches += 1
            if self.context:
                start = max(self._last_viewed + 1, absolute - self.context, self.first)
                self._view.extend(range(start, absolute))
            self._view.append(absolute)
            self._last_viewed = absolute
            self._after_left = self.context
        elif self._after_left > 0:
            self._view.append(absolute)
            self._last_viewed = absolute
            self._after_left -= 1

    def _rebuild(self) -> None:
        self._pattern = self.filter.compiled()
        self._view = deque()
        self._last_viewed = -1
        self._after_left = 0
        self.matches = 0
        if self._pattern:
            for offset, text in enumerate(self._lines):
                self._view_add(self.first + offset, text)
