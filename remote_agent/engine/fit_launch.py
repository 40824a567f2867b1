"""`ctx auto` inside the supervisor's owner task: the context-fit search (remote_agent/fit/) with
a `try_ctx` that really starts the engine.

The search is synchronous (it runs llama-fit-params between launches), so it runs in a worker
thread while the owner task awaits it; each `try_ctx(ctx)` hops back onto the event loop and
starts the engine through the supervisor's own launch code, handed in as callables
(EngineControls): this module never imports the supervisor and never writes its state. A launch
that loads is left running: the search's last successful launch is the configuration that serves,
never launched twice. An out-of-memory failure is reported with the failed allocation read from
the engine's log (fit.oom.find_oom), so the search recomputes instead of halving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from remote_agent.engine.adapters import adapter_for
from remote_agent.engine.adapters.base import OOM, EngineConfig, EngineFailure, FitLimits, NothingFits
from remote_agent.engine.process import vm_peak_bytes
from remote_agent.fit.agent_fit import AgentFitter, FitTarget, run_config, summary
from remote_agent.fit.budget import BudgetError
from remote_agent.fit.estimate import EstimateError, FitParamsError, ModelShape, RunConfig
from remote_agent.fit.gguf_meta import GGUFFormatError, read_header
from remote_agent.fit.oom import OomInfo, find_oom
from remote_agent.fit.search import FitFailed, LaunchOutcome

FIT_ERROR = "fit_error"  # the search could not run (no budget, unreadable header, llama-fit-params failed)
FULL_OFFLOAD = 999  # every layer on the GPU: the fit is about context, never about offloading layers
log = logging.getLogger("remote_agent.fit")


@dataclass(frozen=True)
class EngineControls:
    """What the search may do to the engine, all owned by the supervisor (called on its loop).

    launch(config): start config and wait until healthy (returns it with the ctx it runs); raises
        EngineFailure (the process is then gone).
    stop(): stop the running engine, if any.
    failed_tail(): the output lines of the last launch that failed.
    serving(): the config of the engine that is ready now, or None.
    engine_pid(): the pid of the running engine, or None.
    emit(kind, data): a stream event to the requester.
    """

    launch: Callable[[EngineConfig], Awaitable[EngineConfig]]
    stop: Callable[[], Awaitable[None]]
    failed_tail: Callable[[], list[str]]
    serving: Callable[[], EngineConfig | None]
    engine_pid: Callable[[], int | None]
    emit: Callable[[str, dict], None]


def target_of(config: EngineConfig) -> FitTarget:
    """The fit's view of config: the model file and the engine settings that change its memory."""
    return FitTarget(Path(config.model_path), config.engine, config.args, config.parallel,
                     config.batch_size, config.ubatch_size)


def fit_settings(config: EngineConfig, fitter: AgentFitter) -> tuple[FitLimits, RunConfig]:
    """What the installed engine accepts for config's pending fit (koboldcpp: its --contextsize range,
    --quantkv, --useswa; the search never proposes what it would refuse) and the run settings the
    estimate assumes, checked against the model's head size (a q8_0/q4_0 cache packs heads in blocks
    of 32). Synchronous (may run the engine's --help once and read the GGUF header): call it in a
    thread. The handlers call it before anything is stopped. Raises EngineFailure unsupported (the
    engine refuses the cache type) or fit_error (settings this model cannot run)."""
    limits = adapter_for(config.engine).fit_limits(config, fitter.settings.bin_dir, config.fit.cache_type)
    try:
        cfg = run_config(target_of(config), cache_type=limits.cache_type, on_cpu=fitter.on_cpu,
                         swa_full=limits.swa_full)
        try:
            shape = ModelShape.from_header(read_header(Path(config.model_path)))
        except (GGUFFormatError, OSError):
            shape = None   # the search reads the header again and says what is wrong with it
        cfg.check(shape)
    except EstimateError as exc:
        raise EngineFailure(FIT_ERROR, f"{exc}; or pass a number as ctx") from None
    return limits, cfg


async def fit_and_launch(config: EngineConfig, fitter: AgentFitter | None,
                         engine: EngineControls) -> tuple[EngineConfig, dict]:
    """Search the ctx for config (a pending FitRequest in config.fit) and leave the result running.

    Returns (serving, last_fit): the config that now serves (fit resolved to a ctx and fit_args) and
    the search's summary (fit.agent_fit.summary: fit.search's answer).
    Raises EngineFailure (the engine is then stopped; code fit_error when the search could not run),
    NothingFits when not even 256 tokens fit.
    """
    request = config.fit
    if fitter is None:
        raise EngineFailure(FIT_ERROR, "ctx auto is not available in this agent; pass a number as ctx")
    target = target_of(config)
    adapter = adapter_for(config.engine)
    limits, cfg = await asyncio.to_thread(fit_settings, config, fitter)
    caps = [cap for cap in (request.ctx_cap, limits.ctx_max) if cap]
    ctx_cap = min(caps) if caps else None
    try:
        budget = await asyncio.to_thread(fitter.budget, request.budget_bytes)
    except BudgetError as exc:
        raise EngineFailure(FIT_ERROR, f"{exc}; or pass a number as ctx") from None
    base = replace(config, fit=None, ctx=None, gpu_layers=FULL_OFFLOAD, fit_args=(*adapter.fit_flags(cfg), *limits.flags))
    loop = asyncio.get_running_loop()
    emit = engine.emit

    def progress(data: dict) -> None:  # called in the search's thread
        log.info("fit: %s", data.get("message"))
        loop.call_soon_threadsafe(emit, "progress", dict(data))

    def try_ctx(ctx: int) -> LaunchOutcome:  # called in the search's thread
        attempt = asyncio.run_coroutine_threadsafe(_try_ctx(engine, replace(base, ctx=ctx), fitter.on_cpu), loop)
        return attempt.result()

    try:
        result = await asyncio.to_thread(fitter.search, target, cfg, ctx_cap=ctx_cap, fresh=request.fresh,
                                         budget=budget, try_ctx=try_ctx, on_progress=progress)
    except FitFailed as exc:
        await engine.stop()
        raise EngineFailure(exc.kind, f"ctx auto: {exc}", engine.failed_tail()[-20:]) from None
    except (EstimateError, FitParamsError, GGUFFormatError, BudgetError, OSError) as exc:
        await engine.stop()
        raise EngineFailure(FIT_ERROR, f"ctx auto could not estimate {target.model_path.name}: {exc}; "
                            "pass a number as ctx") from None
    serving = engine.serving()
    if result.status != "fits":
        await engine.stop()
        raise NothingFits(result.message)
    if serving is None:  # it loaded, then died before the search returned
        await engine.stop()
        raise EngineFailure("crashed",
                            f"the engine stopped right after loading at ctx {result.ctx}; see logs.tail")
    return serving, summary(result, budget)


async def _try_ctx(engine: EngineControls, config: EngineConfig, measure_peak: bool) -> LaunchOutcome:
    await engine.stop()  # an earlier attempt that loaded: a probe upward replaces it
    try:
        await engine.launch(config)
    except EngineFailure as failure:
        if failure.code == OOM:
            oom = find_oom(engine.failed_tail()) or OomInfo(None, "unknown", failure.message)
            return LaunchOutcome(False, oom=oom)
        return LaunchOutcome(False, error=failure.message, error_kind=failure.code)
    # On the CPU stand-in the peak virtual size is what the limit counts; a GPU's peak is not
    # measured (then the search does not probe upward).
    pid = engine.engine_pid()
    peak = vm_peak_bytes(pid) if measure_peak and pid is not None else None
    return LaunchOutcome(True, peak_bytes=peak)
