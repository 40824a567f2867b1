"""Sources of log lines that the logs screen follows from a thread.

A `LineFollower` knows nothing about Textual: it is handed `emit(lines)` and a stop Event and
calls `emit` with batches of lines until the source ends or the Event is set. The same screen is
fed by the agent's `logs.tail` stream, by a local file, or by the benchmark's fast generator.
"""

from __future__ import annotations

import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from podtui.agent.client import AgentClient

Emit = Callable[[list[str]], None]

# A batch is flushed when it is this long or this old, whichever comes first: big enough that a
# fast source costs one hand-over per few thousand lines, small enough that a slow one feels live.
BATCH_LINES = 4096
BATCH_SECONDS = 0.05


class LineFollower(ABC):
    """One source of lines. `follow` blocks (it runs in a worker thread) until done or stopped."""

    title: str = "log"

    @abstractmethod
    def follow(self, emit: Emit, stop: threading.Event) -> None:
        """Call emit(lines) with batches of lines (str, no newline) until the source ends (return)
        or `stop` is set. Runs on a worker thread; the source's errors propagate (PodtuiError
        subclasses carry the fix the app shows)."""


class IterableFollower(LineFollower):
    """Follows any iterable of lines, including one that blocks while it waits for more (a
    streaming API): a pump thread reads it, so a batch is handed over once it is BATCH_SECONDS
    old even when the source has gone quiet."""

    def __init__(self, lines: Callable[[], Iterable[str]], title: str = "log") -> None:
        self._lines = lines
        self.title = title

    def follow(self, emit: Emit, stop: threading.Event) -> None:
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._pump, args=(inbox, stop), daemon=True,
                         name=f"pump {self.title}").start()
        batch: list[str] = []
        started = 0.0
        while not stop.is_set():
            try:
                item = inbox.get(timeout=BATCH_SECONDS if batch else 0.25)
            except queue.Empty:
                if batch:
                    emit(batch)
                    batch = []
                continue
            if item is _END or isinstance(item, _Failure):
                if batch:
                    emit(batch)
                if isinstance(item, _Failure):
                    raise item.error
                return
            if not batch:
                started = time.monotonic()
            batch.append(item)
            if len(batch) >= BATCH_LINES or time.monotonic() - started >= BATCH_SECONDS:
                emit(batch)
                batch = []

    def _pump(self, inbox: queue.SimpleQueue, stop: threading.Event) -> None:
        try:
            for line in self._lines():
                inbox.put(line)
                if stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 — re-raised in the follower's thread
            inbox.put(_Failure(exc))
            return
        inbox.put(_END)


_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


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


class AgentLogFollower(LineFollower):
    """`logs.tail` with follow, on a channel of its own; the stop Event closes that channel."""

    def __init__(self, open_client: Callable[[], AgentClient], title: str, last: int = 1000) -> None:
        self._open_client = open_client
        self.title = title
        self._last = last

    def follow(self, emit: Emit, stop: threading.Event) -> None:
        client = self._open_client()
        threading.Thread(target=lambda: (stop.wait(), client.close()), daemon=True,
                         name=f"close {self.title}").start()
        try:
            IterableFollower(lambda: self._lines(client), self.title).follow(emit, stop)
        except Exception:
            if not stop.is_set():      # not the channel we closed on purpose
                raise
        finally:
            stop.set()                 # closes the channel if the stream ended by itself

    def _lines(self, client: AgentClient) -> Iterator[str]:
        for kind, data in client.logs(self._last, follow=True):
            if kind == "log":
                source = data.get("source", "")
                yield f"[{source}] {data.get('line', '')}" if source else str(data.get("line", ""))
