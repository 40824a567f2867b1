"""Bounded ring buffers of log lines per source, with non-blocking fan-out to followers.

The writer (the engine's output pump) never waits for a reader: each follower has a bounded
queue, and when it is full new lines are counted as dropped instead of queued. The follower then
gets one `[N lines dropped]` marker before the next line it does receive.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator

SOURCES = ("engine", "agent")


def log_entry(source: str, line: str, ts: float | None = None) -> dict:
    """{"source", "line", "ts"}: ts in Unix seconds, now when None."""
    return {"source": source, "line": line, "ts": time.time() if ts is None else ts}


def dropped_marker(count: int) -> dict:
    """An "agent" entry "[N lines dropped]" carrying "dropped": N, for a follower that lost N lines."""
    return {**log_entry("agent", f"[{count} lines dropped]"), "dropped": count}


class LogFollower:
    """One reader's view of new lines; iterate it with `async for`."""

    def __init__(self, buffer: "LogBuffer", sources: frozenset[str], max_pending: int) -> None:
        self._buffer = buffer
        self.sources = sources
        self.max_pending = max_pending
        self._pending: deque[dict] = deque()
        self._dropped = 0
        self._wakeup = asyncio.Event()
        self.total_dropped = 0

    def offer(self, entry: dict) -> None:
        """Called by the buffer in the event loop; never blocks."""
        if len(self._pending) >= self.max_pending:
            self._dropped += 1
            self.total_dropped += 1
            return
        if self._dropped:
            self._pending.append(dropped_marker(self._dropped))
            self._dropped = 0
        self._pending.append(entry)
        self._wakeup.set()

    def flush(self) -> list[dict]:
        """What is still queued, plus the dropped marker if lines were lost since (for a clean end)."""
        entries = list(self._pending)
        self._pending.clear()
        if self._dropped:
            entries.append(dropped_marker(self._dropped))
            self._dropped = 0
        return entries

    async def __aiter__(self) -> AsyncIterator[dict]:
        try:
            while True:
                while self._pending:
                    yield self._pending.popleft()
                if self._dropped:  # lines dropped and nothing new accepted since
                    count, self._dropped = self._dropped, 0
                    yield dropped_marker(count)
                    continue
                self._wakeup.clear()
                await self._wakeup.wait()
        finally:
            self._buffer.unfollow(self)


class LogBuffer:
    """A ring of at most capacity_per_source entries per source (SOURCES), and the followers new lines
    are offered to (each queues at most follower_queue). append may be called from any thread; the
    followers live on the loop given to bind_loop."""

    def __init__(self, capacity_per_source: int = 5000, follower_queue: int = 1000) -> None:
        self._rings = {source: deque(maxlen=capacity_per_source) for source in SOURCES}
        self._followers: set[LogFollower] = set()
        self._follower_queue = follower_queue
        self._lock = threading.Lock()  # appends may come from worker threads (agent logging)
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the followers live on; appends from other threads are handed over to it."""
        self._loop = loop

    def append(self, source: str, line: str, ts: float | None = None) -> None:
        """Add one line (ts: Unix seconds, default now) and offer it to the followers; never blocks on one."""
        entry = log_entry(source, line, ts)
        with self._lock:
            self._rings[source].append(entry)
        loop = self._loop
        if loop is None or not self._followers:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._fan_out(entry)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._fan_out, entry)

    def _fan_out(self, entry: dict) -> None:
        for follower in list(self._followers):
            if entry["source"] in follower.sources:
                follower.offer(entry)

    def tail(self, n: int, sources: frozenset[str]) -> list[dict]:
        """The last n entries of sources (merged by ts when several), oldest first; [] when n <= 0."""
        with self._lock:
            entries = [e for source in sources for e in self._rings[source]]
        if len(sources) > 1:
            entries.sort(key=lambda e: e["ts"])
        return entries[-n:] if n > 0 else []

    def follow(self, sources: frozenset[str], max_pending: int | None = None) -> LogFollower:
        """A new follower of sources that queues at most max_pending lines (default: follower_queue)."""
        follower = LogFollower(self, sources, max_pending or self._follower_queue)
        self._followers.add(follower)
        return follower

    def unfollow(self, follower: LogFollower) -> None:
        """Stop offering lines to follower; one that is not following is ignored."""
        self._followers.discard(follower)

    @property
    def follower_count(self) -> int:
        """How many followers are attached."""
        return len(self._followers)
