"""DaemonLink: the engine as the agent daemon supervising it reports it, over the daemon's Unix socket.

It speaks the agent protocol (remote_agent/protocol.py; one short connection per call, as the test
bed's and podtui's clients do): `status` for the engine's state, port, pid and last_error, and
`engine.api_key` once for the key the engine requires. A failure is named by the daemon's own
classification (engine/adapters/classify.py): after an answer breaks off, the link waits (at most
FAILURE_SETTLE_S) for the supervisor to notice the exit — it reaps and classifies within about half
a second — and reports that kind. Standard library only.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

from remote_agent import protocol
from remote_agent.serverless.errors import (
    AGENT_UNREACHABLE, ENGINE_LOST, ENGINE_NOT_READY, ENGINE_UNREACHABLE, JobError)
from remote_agent.serverless.link import RESTART_WAIT_S, EngineTarget, Report

CALL_TIMEOUT_S = 10.0
POLL_S = 0.1
FAILURE_SETTLE_S = 3.0
# Supervisor states (engine/supervisor.py) in which the engine may still come (back) up.
COMING = ("starting", "stopping")


def is_settled(status: dict) -> bool:
    """Whether the engine's state will not change by itself: ready, paused, failed with no restart
    due, or stopped after a failure. A stopped engine without an error is still resolving MODEL (a
    download can take minutes), and a failed one with restart_in_s set restarts soon."""
    state = status.get("state")
    if state in ("ready", "paused"):
        return True
    if state == "failed":
        return status.get("restart_in_s") is None
    if state == "stopped":
        return status.get("last_error") is not None
    return False


def error_from_status(status: dict) -> JobError:
    """The JobError a job gets while the engine does not serve: the daemon's last_error kind and
    message, the engine and its state, and what to do."""
    state = status.get("state")
    last = status.get("last_error") or {}
    engine = status.get("engine")
    if state == "paused":
        fix = ("the agent stopped retrying: fix the cause above in the endpoint's settings (MODEL, CTX, "
               "ARGS, GPU), then update the endpoint so its workers restart")
    elif state == "failed" and status.get("restart_in_s") is not None:
        fix = f"the agent restarts the engine in {status['restart_in_s']:g} s; send the request again"
    elif state in COMING or (state == "stopped" and not last):
        return JobError(ENGINE_NOT_READY, f"the engine is still {'loading MODEL' if state == 'stopped' else state}",
                        "send the request again in a moment", engine=engine, engine_state=state)
    else:
        fix = ("read the worker's log (podtui endpoints logs); fix MODEL or the engine settings, then update "
               "the endpoint")
    return JobError(last.get("kind") or ENGINE_UNREACHABLE, last.get("message") or f"the engine is {state}",
                    fix, engine=engine, engine_state=state)


class DaemonLink:
    """The EngineLink (serverless/link.py) of the image: the daemon at `socket` supervises the engine."""

    def __init__(self, socket: Path, *, restart_wait_s: float = RESTART_WAIT_S,
                 failure_settle_s: float = FAILURE_SETTLE_S) -> None:
        self.socket = Path(socket)
        self.restart_wait_s = restart_wait_s
        self.failure_settle_s = failure_settle_s
        self._ids = itertools.count(1)
        self._target: EngineTarget | None = None
        self._key: tuple[str | None] | None = None  # asked once: the key survives engine restarts

    async def call(self, method: str, params: dict | None = None) -> Any:
        """One request on a fresh connection → its result. Raises JobError: agent_unreachable when the
        socket does not answer in CALL_TIMEOUT_S, the daemon's code for an error answer."""
        try:
            return await asyncio.wait_for(self._call(method, params or {}), CALL_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError, protocol.ProtocolError) as exc:
            raise JobError(AGENT_UNREACHABLE, f"the agent daemon at {self.socket} does not answer ({exc!r})",
                           "the worker's log says why the daemon stopped; the worker is replaced when it "
                           "exits") from None

    async def _call(self, method: str, params: dict) -> Any:
        reader, writer = await asyncio.open_unix_connection(str(self.socket), limit=protocol.MAX_LINE_BYTES)
        try:
            await reader.readline()  # the hello line
            request_id = next(self._ids)
            writer.write(protocol.encode({"id": request_id, "method": method, "params": params}))
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line:
                    raise OSError("the daemon closed the connection")
                message = protocol.decode_line(line)
                if message.get("id") != request_id or "event" in message:
                    continue
                if "error" in message:
                    error = message["error"] or {}
                    raise JobError(error.get("code", "internal"), error.get("message", "agent error"))
                return message.get("result")
        finally:
            writer.close()

    async def status(self) -> dict:
        """The daemon's `status` (see server/handlers.py Agent.status)."""
        return await self.call("status")

    async def _ready_target(self, status: dict) -> EngineTarget:
        if self._key is None:
            self._key = ((await self.call("engine.api_key")).get("api_key"),)
        self._target = EngineTarget(f"http://127.0.0.1:{status['port']}", status.get("engine") or "llama-server",
                                    status.get("pid"), self._key[0])
        return self._target

    async def settle(self, timeout_s: float, report: Report) -> None:
        """See EngineLink.settle; reports "engine: <state> …" on each change."""
        deadline = time.monotonic() + timeout_s
        last: tuple | None = ("",)  # nothing reported yet
        while True:
            try:
                status = await self.status()
                seen = (status.get("state"), (status.get("last_error") or {}).get("kind"))
                line = _describe(status)
            except JobError:
                status, seen, line = {}, None, "waiting for the agent daemon to listen on its socket"
            if seen != last:
                last = seen
                report(line)
            if status and is_settled(status):
                if status["state"] == "ready":
                    try:
                        await self._ready_target(status)
                    except JobError as exc:  # each job asks again, and fails with the reason
                        report(exc.message)
                return
            if time.monotonic() > deadline:
                report(f"the engine is not ready after {timeout_s:g} s: taking jobs anyway, each fails with the reason")
                return
            await asyncio.sleep(POLL_S * 2)

    async def target(self) -> EngineTarget:
        """See EngineLink.target."""
        if self._target is not None:
            return self._target
        return await self._wait_ready()

    async def recover(self, stale: EngineTarget) -> EngineTarget:
        """See EngineLink.recover."""
        self._target = None
        return await self._wait_ready()

    async def _wait_ready(self) -> EngineTarget:
        deadline = time.monotonic() + self.restart_wait_s
        while True:
            status = await self.status()
            if status.get("state") == "ready":
                return await self._ready_target(status)
            if is_settled(status) or time.monotonic() > deadline:
                raise error_from_status(status)
            await asyncio.sleep(POLL_S)

    async def failure(self, stale: EngineTarget) -> JobError:
        """See EngineLink.failure: the daemon's kind once it has seen the engine go; engine_lost when
        the engine still runs (it closed the answer itself)."""
        self._target = None
        deadline = time.monotonic() + self.failure_settle_s
        while True:
            try:
                status = await self.status()
            except JobError as exc:
                return exc
            moved = status.get("state") != "ready" or status.get("pid") != stale.pid
            if moved:
                return error_from_status(status)
            if time.monotonic() > deadline:
                return JobError(ENGINE_LOST, "the engine broke off its answer but still runs", "send the request again",
                                engine=status.get("engine"), engine_state=status.get("state"))
            await asyncio.sleep(POLL_S)


def _describe(status: dict) -> str:
    state = status.get("state")
    if state == "ready":
        return f"engine ready: {status.get('engine')} serves {status.get('model')} on port {status.get('port')} " \
               f"(ctx {status.get('ctx')})"
    last = status.get("last_error")
    why = f" ({last['kind']}: {last['message']})" if last else ""
    if state == "stopped" and not last:
        return "engine: resolving MODEL (a download shows its progress in the daemon's lines)"
    return f"engine: {state}{why}"
