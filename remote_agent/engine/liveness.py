"""End-to-end liveness of an RPC cluster's llama-server, with a deadline.

A frozen or black-holed backend makes llama-server hang forever, and its /health still answers 200
(RPC.md fact 8). Measured on the test bed: /slots also answers at once while a request is stuck
behind a SIGSTOPped backend. Neither endpoint shows the hang, but /slots shows progress. Every
processing slot reports its task id, the prompt tokens processed so far (n_prompt_tokens_processed)
and the tokens generated so far (next_token[0].n_decoded). So each check (every interval_s):

- busy (a slot processing): the progress marker of the processing slots must change within
  deadline_s. If it does not, llama-server is stuck, and report(generation, failure) is called.
  The supervisor then kills it, and its restart check names the backend that does not answer.
  deadline_s must exceed the slowest single batch: one prompt batch of a large model over slow
  links takes seconds.
- idle: with idle_probe_s > 0, a 1-token completion is started at most that often. It goes
  through every backend, and a frozen one leaves it processing without progress, which the busy
  rule then catches. A probe is a request: it counts as activity for status.idle_s and for
  IDLE_STOP_MINUTES, so the daemon turns idle probes off when IDLE_STOP_MINUTES is set.
- /slots unavailable (--no-slots): the 1-token completion itself must answer within deadline_s.

Only the server role runs this (the daemon starts it); engines of podtui's single-pod role are
watched as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import httpx

from remote_agent.engine.adapters.base import BACKEND_HUNG, EngineFailure
from remote_agent.engine.process import EngineProcess

PROBE_BODY = {"prompt": "Hi", "n_predict": 1, "cache_prompt": False, "temperature": 0}
log = logging.getLogger("remote_agent.liveness")


class LivenessWatch:
    """Watches the ready engine that current() returns (None: nothing to watch) and calls
    report(generation, EngineFailure backend_hung) once per stuck launch. Times in seconds."""

    def __init__(self, current: Callable[[], EngineProcess | None],
                 report: Callable[[int, EngineFailure], Awaitable[None]], *, interval_s: float = 5.0,
                 deadline_s: float = 60.0, idle_probe_s: float = 60.0) -> None:
        self.current = current
        self.report = report
        self.interval_s = interval_s
        self.deadline_s = deadline_s
        self.idle_probe_s = idle_probe_s
        self.last_ok: float | None = None  # monotonic time of the last sign of life
        self._generation: int | None = None
        self._marker: tuple | None = None
        self._since = 0.0
        self._probe: asyncio.Task | None = None
        self._probed_at = 0.0

    async def run(self) -> None:
        """Check every interval_s until cancelled. Never raises (a failed check is logged)."""
        async with httpx.AsyncClient() as client:
            try:
                while True:
                    await asyncio.sleep(self.interval_s)
                    engine = self.current()
                    if engine is None:
                        self._generation = None
                        continue
                    try:
                        await self.check(client, engine)
                    except Exception:
                        log.exception("liveness check failed")
            finally:
                if self._probe is not None:
                    self._probe.cancel()

    async def check(self, client: httpx.AsyncClient, engine: EngineProcess) -> None:
        """One check of engine (see the module docstring); reports it when stuck."""
        now = time.monotonic()
        if engine.generation != self._generation:  # a new launch: start afresh
            self._generation, self._marker, self._since, self._probed_at = engine.generation, None, now, 0.0
        base = f"http://{engine.config.host}:{engine.config.port}"
        try:
            reply = await client.get(f"{base}/slots", headers=engine.headers, timeout=self.deadline_s)
            slots = reply.json() if reply.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            slots = None
        if not isinstance(slots, list):
            return await self._check_by_probe(client, base, engine)
        busy = [slot for slot in slots if isinstance(slot, dict) and slot.get("is_processing")]
        if not busy:
            self._marker, self.last_ok = None, now
            if self.idle_probe_s > 0 and now - self._probed_at >= self.idle_probe_s and not self._probing:
                self._probed_at = now
                self._probe = asyncio.create_task(self._complete(client, base, engine))
            return
        marker = tuple(_progress(slot) for slot in busy)
        if marker != self._marker:
            self._marker, self._since, self.last_ok = marker, now, now
        elif now - self._since >= self.deadline_s:
            await self._stuck(engine, f"llama-server made no progress for {now - self._since:.0f}s on a request "
                                      f"(slot task {busy[0].get('id_task')})")

    @property
    def _probing(self) -> bool:
        return self._probe is not None and not self._probe.done()

    async def _complete(self, client: httpx.AsyncClient, base: str, engine: EngineProcess) -> None:
        """A 1-token completion; its outcome is seen through /slots (or awaited without /slots)."""
        try:
            await client.post(f"{base}/completion", json=PROBE_BODY, headers=engine.headers,
                              timeout=self.deadline_s + 2 * self.interval_s)
        except httpx.HTTPError:
            pass

    async def _check_by_probe(self, client: httpx.AsyncClient, base: str, engine: EngineProcess) -> None:
        started = time.monotonic()
        try:
            await client.post(f"{base}/completion", json=PROBE_BODY, headers=engine.headers, timeout=self.deadline_s)
        except httpx.TimeoutException:
            return await self._stuck(engine, f"a 1-token completion did not finish within {self.deadline_s:g}s")
        except httpx.HTTPError:
            return  # refused or reset: the engine is exiting, and its exit is handled as a crash
        self.last_ok = time.monotonic()
        log.debug("liveness: 1-token completion in %.3fs", self.last_ok - started)

    async def _stuck(self, engine: EngineProcess, what: str) -> None:
        log.error("liveness: %s; stopping it", what)
        if self._probe is not None:
            self._probe.cancel()
        self._generation = None  # report once per launch
        await self.report(engine.generation, EngineFailure(
            BACKEND_HUNG, f"{what}: a backend froze or its link went silent (llama-server waits forever, RPC "
                          "has no timeouts); it was stopped and the backends are asked which one does not answer"))

    def snapshot(self) -> dict:
        """status's "liveness": {"interval_s", "deadline_s", "idle_probe_s", "last_ok_s_ago"}."""
        ago = round(time.monotonic() - self.last_ok, 1) if self.last_ok is not None else None
        return {"interval_s": self.interval_s, "deadline_s": self.deadline_s, "idle_probe_s": self.idle_probe_s,
                "last_ok_s_ago": ago}


def _progress(slot: dict) -> tuple:
    """What moves while a slot works: (slot id, task id, prompt tokens processed, tokens generated)."""
    next_token = slot.get("next_token")
    decoded = next_token[0].get("n_decoded") if isinstance(next_token, list) and next_token else None
    return slot.get("id"), slot.get("id_task"), slot.get("n_prompt_tokens_processed"), decoded
