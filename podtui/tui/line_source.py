"""Sources of log lines that the logs screen follows from a thread.

A `LineFollower` knows nothing about Textual: it is handed `emit(lines)` and a stop Event and
calls `emit` with batches of lines until the source ends or the Event is set. The same screen is
fed by the agent's `logs.tail` stream, by a local file, or by the benchmark's fast generator.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path

Emit = Callable[[list[str]], None]

# A batch is flushed when it is this long or this old, whichever comes first: big enough that a
# fast source costs one hand-over per few thousand lines, small enough that a slow one feels live.
BATCH_LINES = 4096
BATCH_SECONDS = 0.05


class LineFollower(ABC):
    """One source of lines. `follow` blocks (it runs in a worker thread) until done or stopped."""

    title: str = "log"

    @abstractmethod
    def follow(self, emit: Emit, stop: threading.Event) -> None: ...


class IterableFollower(LineFollower):
    """Follows any iterable of lines (a generator that blocks while waiting is fine)."""

    def __init__(self, lines: Callable[[], Iterable[str]], title: str = "log") -> None:
        self._lines = lines
        self.title = title

    def follow(self, emit: Emit, stop: threading.Event) -> None:
        batch: list[str] = []
        started = time.monotonic()
        for line in self._lines():
            if stop.is_set():
                return
            batch.append(line)
            if len(batch) >= BATCH_LINES or time.monotonic() - started >= BATCH_SECONDS:
                emit(batch)
                batch = []
                started = time.monotonic()
        if batch and not stop.is_set():
            emit(batch)


class FileFollower(LineFollower):
    """Follows a text file like `tail -n N -f`: the last lines, then whatever is appended."""

    def __init__(self, path: Path, title: str | None = None, last: int = 1000,
                 poll_seconds: float = 0.2) -> None:
        self.path = path
        self.title = title or str(path)
        self._last = last
        self._poll = poll_seconds

    def follow(self, emit: Emit, stop: threading.Event) -> None:
        while not self.path.exists():
            if stop.wait(self._poll):
                return
        with self.path.open("r", encoding="utf-8", errors="replace") as handle:
            tail = handle.read().splitlines()[-self._last:]
            if tail:
                emit(tail)
            partial = ""
            while not stop.is_set():
                chunk = handle.read()
                if not chunk:
                    stop.wait(self._poll)
                    continue
                chunk = partial + chunk
                lines = chunk.split("\n")
                partial = lines.pop()
                if lines:
                    emit(lines)


class UnavailableFollower(LineFollower):
    """A source that cannot be followed: raises its error from the worker, so the app's one
    failure handler shows it with the fix."""

    def __init__(self, title: str, error: Exception) -> None:
        self.title = title
        self._error = error

    def follow(self, emit: Emit, stop: threading.Event) -> None:
        raise self._error
