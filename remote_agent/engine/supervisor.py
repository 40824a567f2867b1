"""EngineSupervisor: the one owner of the engine's state.

Every change goes through one asyncio task reading a queue (user commands, crash notices, due
restarts), so nobody checks a stale state and then acts on it. States: stopped → starting → ready
→ stopping, plus failed (a restart may be due) and paused (repeated failures: it waits for a person
instead of crash-looping, seed 000 Q6).

An RPC cluster's server adds, through the same queue: a preflight before every launch (engine/backends.py),
a pause that resumes by itself (PausedUntil names a backend that is down), report_hung (engine/liveness.py
found llama-server stuck) and new endpoints applied between launches (start's reconfigure). A backend's
failure is retried at once, so the preflight can still find the backend that went down."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from remote_agent.engine import process as engine_process
from remote_agent.engine.adapters import adapter_for
from remote_agent.engine.adapters.base import (
    BACKEND_HUNG, BACKEND_LOST, BAD_MODEL, MISSING_BINARY, EngineConfig, EngineFailure, NothingFits, PausedUntil)
from remote_agent.engine.fit_launch import EngineControls, fit_and_launch
from remote_agent.engine.logbuf import LogBuffer
from remote_agent.engine.orphan import EngineRecordFile
from remote_agent.engine.supervision import (  # noqa: F401 (Timings: the daemon's flags import it from here)
    FAILED, PAUSED, READY, STARTING, STOPPED, STOPPING, Command as _Command, Emit, Timings, no_emit as _no_emit)
from remote_agent.engine_key import KEYLESS, EngineKey
from remote_agent.fit.agent_fit import AgentFitter

NOT_RETRIED = (BAD_MODEL, MISSING_BINARY)  # the same config fails the same way: pause at once
AT_ONCE = (BACKEND_LOST, BACKEND_HUNG)  # restart now: the preflight names a backend that is still down
log = logging.getLogger("remote_agent.supervisor")


class EngineSupervisor:
    """The one owner of the engine's state. Other tasks call the async methods below: each queues a
    command for run() and returns once it is done, raising what it raised. state, config,
    last_error and last_fit are written only by the owner task."""

    def __init__(self, logbuf: LogBuffer, *, bin_dir: Path | None = None, address_space_limit: int | None = None,
                 timings: Timings | None = None, on_ready: Callable[[EngineConfig], None] = lambda c: None,
                 on_stopped: Callable[[], None] = lambda: None, stack_limit: int | None = None,
                 fitter: AgentFitter | None = None, api_key: EngineKey = KEYLESS,
                 engine_record: EngineRecordFile | None = None,
                 preflight: Callable[[EngineConfig], Awaitable[EngineConfig]] | None = None) -> None:
        self.logbuf = logbuf
        # Before every launch (an RPC server's): returns the config to launch, a pending fit resolved.
        self.preflight = preflight
        self._waiter: asyncio.Task | None = None  # waits for a PausedUntil's cause to go away
        # Where the running engine is written down, so the next daemon can stop it should this one
        # die without doing so (engine/orphan.py); None keeps no record.
        self.engine_record = engine_record
        self.api_key = api_key  # the agent's key (remote_agent/engine_key.py), handed to every engine
        self.bin_dir = bin_dir
        self.address_space_limit = address_space_limit
        self.stack_limit = stack_limit
        self.fitter = fitter  # runs `ctx auto` searches (engine/fit_launch.py)
        self.last_fit: dict | None = None  # the last search's summary (fit.search's answer)
        self._failed_tail: list[str] = []  # the whole output tail of the last launch that failed
        self.timings = timings or Timings()
        self._on_ready, self._on_stopped = on_ready, on_stopped
        self._queue: asyncio.Queue[_Command] = asyncio.Queue()
        self.state = STOPPED
        self.config: EngineConfig | None = None  # running, or the one last tried
        self.last_error: EngineFailure | None = None
        self._engine: engine_process.EngineProcess | None = None
        self._generation = 0
        self._token = 0  # bumped by every user command: restarts scheduled before it become stale
        self._failures = 0
        self._restart_at: float | None = None
        self._emit: Emit = _no_emit

    # ---- what other tasks call -------------------------------------------------------------
    async def start(self, config: EngineConfig, emit: Emit = _no_emit, reconfigure: Callable[[], None] | None = None) -> None:
        """Stop what runs, call reconfigure() if given (in the owner task: an RPC server's new endpoints), start
        config (a pending fit searches first). Raises EngineFailure; the state is then failed, or paused for NothingFits."""
        await self._submit(_Command("start", config, emit, reconfigure=reconfigure))

    async def swap(self, config: EngineConfig, emit: Emit = _no_emit) -> None:
        """Drain and stop the engine that serves, start config, and on failure start the old one again.
        Raises EngineFailure saying whether the rollback serves. With nothing serving it is start()."""
        await self._submit(_Command("swap", config, emit))

    async def stop(self, emit: Emit = _no_emit) -> None:
        """Stop the engine (SIGTERM its group, Timings.stop_grace, SIGKILL) and report it stopped on purpose."""
        await self._submit(_Command("stop", emit=emit))

    async def autostart(self, config: EngineConfig) -> None:
        """Start at daemon boot: failures are retried with backoff, then paused (nobody is watching)."""
        await self._submit(_Command("autostart", config))

    async def report_failure(self, failure: EngineFailure) -> None:
        """A failure before any engine ran (e.g. the boot model could not be fetched)."""
        await self._submit(_Command("report", failure=failure))

    async def shutdown(self) -> None:
        """Stop the engine for a daemon exit; the persisted config stays, so a restart restores it."""
        await self._submit(_Command("shutdown"))

    async def report_hung(self, generation: int, failure: EngineFailure) -> None:
        """The engine of that launch generation stopped making progress (engine/liveness.py): kill it
        and handle failure as if it had crashed. Stale generations are ignored."""
        await self._submit(_Command("hung", token=generation, failure=failure))

    @property
    def ready_engine(self) -> engine_process.EngineProcess | None:
        """The engine process that is ready now (its generation, port and headers), or None. Read only."""
        return self._engine if self.state == READY else None

    def snapshot(self) -> dict[str, Any]:
        """status's engine fields: state, engine, model, model_path, ctx, pid, uptime_s (seconds since
        ready), last_error ({"kind", "message"} or None), restart_in_s (seconds until a restart, or None)."""
        engine = self._engine
        config = self.config if self.state != STOPPED else None  # a stopped engine serves no model
        restart_in = None
        if self.state == FAILED and self._restart_at is not None:
            restart_in = max(0.0, round(self._restart_at - time.monotonic(), 3))
        return {
            "state": self.state,
            "engine": config.engine if config else None,
            "model": config.model if config else None,
            "model_path": config.model_path if config else None,
            "ctx": config.ctx if config else None,
            "pid": engine.pid if engine else None,
            "uptime_s": round(time.monotonic() - engine.ready_at, 3) if engine and engine.ready_at else None,
            "last_error": self.last_error.to_dict() if self.last_error else None,
            "restart_in_s": restart_in,
            "engine_info": engine.info if engine else None,
        }

    @property
    def engine_key(self) -> EngineKey:
        """The API key the engine requires: the current (or last tried) config's — a key in its ARGS
        wins — else the agent's, which the next start hands over. Read from any thread."""
        config = self.config
        if config is None:
            return self.api_key
        return adapter_for(config.engine).engine_key(config.args, self.api_key)

    @property
    def serving(self) -> EngineConfig | None:
        """The config of the engine that is ready now, or None."""
        return self._engine.config if self._engine and self.state == READY else None

    async def _submit(self, command: _Command) -> None:
        command.future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(command)
        await command.future

    # ---- the owner task ----------------------------------------------------------------------
    async def run(self) -> None:
        """The owner task: runs queued commands one at a time until shutdown(). A command's exception goes
        to its caller; the loop never stops on one."""
        while True:
            command = await self._queue.get()
            self._emit = command.emit
            try:
                await getattr(self, f"_on_{command.name}")(command)
            except Exception as exc:  # handed to the caller; the owner itself keeps going
                if command.future is not None and not command.future.done():
                    command.future.set_exception(exc)
                elif not isinstance(exc, EngineFailure):
                    log.exception("supervisor: %s failed", command.name)
            else:
                if command.future is not None and not command.future.done():
                    command.future.set_result(None)
            finally:
                self._emit = _no_emit
            if command.name == "shutdown":
                return

    def _set_state(self, state: str, **extra) -> None:
        if state != self.state:
            log.info("engine %s → %s", self.state, state)
        self.state = state
        if state != FAILED:
            self._restart_at = None
        self._emit("state", {"state": state, **extra})

    def _user_command(self) -> None:
        self._token += 1
        self._failures = 0
        if self._waiter is not None:  # a person chose: stop waiting for a backend
            self._waiter.cancel()
            self._waiter = None

    async def _launch(self, config: EngineConfig) -> EngineConfig:
        """Start config and wait for health; returns config with ctx set to what the engine really runs
        when config left it to the engine. On failure the process is gone and EngineFailure raised."""
        self.config = config
        adapter = adapter_for(config.engine)
        self._generation += 1
        self._set_state(STARTING, model=config.model)
        if self.preflight is not None:
            config = self.config = await self.preflight(config)
        engine = await engine_process.spawn(config, adapter, self._generation, self.logbuf, bin_dir=self.bin_dir,
                                            address_space_limit=self.address_space_limit,
                                            stack_limit=self.stack_limit, agent_key=self.api_key)
        if self.engine_record is not None:  # for a later daemon, should this one die (engine/orphan.py)
            self.engine_record.note(engine.pid, port=config.port, engine=adapter.name, model_path=config.model_path)
        try:
            await engine_process.wait_healthy(engine, self.timings.health_timeout, self.timings.health_interval)
        except BaseException:
            await engine_process.terminate(engine, grace_s=1.0)
            self._forget()
            self._failed_tail = list(engine.tail)  # the fit reads the failed allocation from it
            raise
        if config.ctx is None:  # the engine's default (the model's trained context, a version's default)
            ctx = await engine_process.served_ctx(engine)
            if ctx is not None:
                config = engine.config = self.config = replace(config, ctx=ctx)
        self._engine = engine
        generation = engine.generation
        engine.exited.add_done_callback(lambda task: self._queue.put_nowait(_Command("exited", token=generation)))
        self._set_state(READY, model=config.model, pid=engine.pid)
        log.info("%s ready on port %d %s", config.engine, config.port,
                 f"with {config.model} (ctx {config.ctx})" if config.model else f"of {config.host}")
        return config

    async def _stop_engine(self) -> None:
        engine, self._engine = self._engine, None  # its exit notice is now stale
        if engine is None:
            return
        self._set_state(STOPPING)
        await engine_process.terminate(engine, self.timings.stop_grace)
        self._forget()
        log.info("%s (pid %d) stopped", engine.adapter.name, engine.pid)

    def _forget(self) -> None:
        """The recorded engine has exited and been reaped: a later daemon must not look for it."""
        if self.engine_record is not None:
            self.engine_record.clear()

    async def _launch_or_fit(self, config: EngineConfig) -> EngineConfig:
        """Launch config; a pending `ctx auto` searches first and returns the config it left running."""
        if config.fit is None or self.preflight is not None:  # a preflight resolves its own fit
            return await self._launch(config)
        try:
            serving, self.last_fit = await fit_and_launch(config, self.fitter, self._controls())
        except EngineFailure:
            self.config = config  # with its fit: a restart searches again
            raise
        return serving

    def _controls(self) -> EngineControls:
        return EngineControls(launch=self._launch, stop=self._stop_engine, failed_tail=lambda: self._failed_tail,
                              serving=lambda: self.serving,
                              engine_pid=lambda: self._engine.pid if self._engine else None, emit=self._emit)

    async def _on_start(self, command: _Command) -> None:
        self._user_command()
        await self._stop_engine()
        if command.reconfigure:
            command.reconfigure()
        try:
            config = await self._launch_or_fit(command.config)
        except EngineFailure as failure:
            if isinstance(failure, PausedUntil):
                self._pause_until(failure)
            else:
                self._pause(failure) if isinstance(failure, NothingFits) else self._fail(failure)
            raise
        self.last_error = None
        self._on_ready(config)

    async def _on_stop(self, command: _Command) -> None:
        self._user_command()
        await self._stop_engine()
        self._set_state(STOPPED)
        self._on_stopped()

    async def _on_shutdown(self, command: _Command) -> None:
        self._user_command()
        await self._stop_engine()
        self._set_state(STOPPED)

    async def _on_report(self, command: _Command) -> None:
        if self._engine is None:
            self._fail(command.failure)

    async def _on_swap(self, command: _Command) -> None:
        old = self.serving
        if old is None:  # nothing serves, so nothing to drain or roll back to
            return await self._on_start(command)
        self._user_command()
        await engine_process.drain(self._engine, self.timings.drain_timeout, self._emit)
        await self._stop_engine()
        try:
            config = await self._launch_or_fit(command.config)
        except EngineFailure as failure:
            log.warning("swap to %s failed (%s); rolling back to %s", command.config.model, failure.code, old.model)
            self._emit("state", {"state": "rolling_back", "to": old.model})
            try:
                await self._launch(old)
            except EngineFailure as second:  # a backend that went down is waited for; the rest needs a person
                self._pause_until(second) if isinstance(second, PausedUntil) else self._fail(failure)
                raise EngineFailure(failure.code, f"{failure.message}; rolling back to {old.model} failed too: "
                                    f"{second.message}", failure.log_tail) from None
            self.last_error = failure
            raise EngineFailure(failure.code, f"{failure.message}; rolled back to {old.model}, which keeps serving",
                                failure.log_tail) from None
        self.last_error = None
        self._on_ready(config)

    def _pause(self, failure: EngineFailure) -> None:
        self.last_error = EngineFailure(failure.code, f"{failure.message}; paused instead of crash-looping: pick a "
                                        "smaller model or quant, or free memory, then engine.start or engine.swap")
        log.error("engine paused: %s", self.last_error.message)
        self._set_state(PAUSED, error=self.last_error.to_dict())

    def _pause_until(self, failure: PausedUntil) -> None:
        """Paused, naming the cause elsewhere (failure's message); resume by itself once failure.until()
        returns, unless a person starts something else first."""
        self.last_error = failure
        log.error("engine paused until it can resume by itself: %s", failure.message)
        self._set_state(PAUSED, error=failure.to_dict())
        token = self._token

        async def wait() -> None:
            await failure.until()
            self._queue.put_nowait(_Command("resume", token=token))

        self._waiter = asyncio.create_task(wait(), name="engine-resume-waiter")

    async def _on_resume(self, command: _Command) -> None:
        if command.token == self._token and self._engine is None and self.state == PAUSED:
            self._waiter, self._failures = None, 0
            log.info("the cause is gone (%s); starting again", self.last_error.message if self.last_error else "")
            await self._attempt_restart(command.token)

    async def _on_hung(self, command: _Command) -> None:
        engine = self._engine
        if engine is None or engine.generation != command.token:
            return
        self._engine = None  # its exit notice is now stale
        await engine_process.terminate(engine, grace_s=1.0)  # a hung engine may not exit on SIGTERM
        self._forget()
        self._after_failure(command.failure)

    def _fail(self, failure: EngineFailure) -> None:
        self.last_error = failure
        log.error("engine failure (%s): %s", failure.code, failure.message)
        self._set_state(FAILED, error=failure.to_dict())

    # ---- crashes and restarts ------------------------------------------------------------
    async def _on_exited(self, command: _Command) -> None:
        engine = self._engine
        if engine is None or engine.generation != command.token:
            return  # a process we stopped on purpose, or one already replaced
        self._engine = None
        await engine_process.terminate(engine, grace_s=0.5)  # reap leftovers of its group, settle output
        self._forget()
        if engine.ready_at is not None and time.monotonic() - engine.ready_at > self.timings.stable_after:
            self._failures = 0
        self._after_failure(engine.failure())

    async def _on_autostart(self, command: _Command) -> None:
        self._user_command()
        await self._stop_engine()
        self.config = command.config
        await self._attempt_restart(self._token)

    async def _on_restart(self, command: _Command) -> None:
        if command.token == self._token and self._engine is None and self.config is not None:
            await self._attempt_restart(command.token)

    async def _attempt_restart(self, token: int) -> None:
        try:
            config = await self._launch_or_fit(self.config)
        except EngineFailure as failure:
            self._after_failure(failure)
            return
        self._on_ready(config)

    def _after_failure(self, failure: EngineFailure) -> None:
        if isinstance(failure, NothingFits):
            return self._pause(failure)
        if isinstance(failure, PausedUntil):
            return self._pause_until(failure)
        self._failures += 1
        self.last_error = failure
        log.error("engine failure %d in a row (%s): %s", self._failures, failure.code, failure.message)
        if failure.code in NOT_RETRIED or self._failures > self.timings.max_restarts:
            reason = (f"paused after {self._failures} failure(s) in a row instead of crash-looping; last: "
                      f"{failure.message}. Fix the cause, then engine.start or engine.swap")
            self.last_error = EngineFailure(failure.code, reason, failure.log_tail)
            self._set_state(PAUSED, error=self.last_error.to_dict())
            return
        delay = 0.0 if failure.code in AT_ONCE and self._failures == 1 else min(
            self.timings.restart_backoff * 2 ** (self._failures - 1), self.timings.max_backoff)
        self._set_state(FAILED, error=failure.to_dict(), restart_in_s=delay)
        self._restart_at = time.monotonic() + delay
        token = self._token
        asyncio.get_running_loop().call_later(
            delay, lambda: self._queue.put_nowait(_Command("restart", token=token)))
