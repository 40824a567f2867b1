"""`ctx auto` inside the supervisor's owner task: the context-fit search (remote_agent/fit/) with
a `try_ctx` that really starts the engine.

The search is synchronous (it runs llama-fit-params between launches), so it runs in a worker
thread while the owner task awaits it; each `try_ctx(ctx)` hops back onto the event loop and
starts the engine through the supervisor's own launch code. A launch that loads is left running:
the search's last successful launch is the configuration that serves, never launched twice. An
out-of-memory failure is reported with the failed allocation read from the engine's log
(fit.oom.find_oom), so the search recomputes instead of halving.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

from remote_agent.engine import process as engine_process
from remote_agent.engine.adapters import adapter_for
from remote_agent.engine.adapters.base import OOM, EngineConfig, EngineFailure
from remote_agent.fit.agent_fit import FitTarget, run_config, summary
from remote_agent.fit.budget import BudgetError
from remote_agent.fit.estimate import EstimateError, FitParamsError
from remote_agent.fit.gguf_meta import GGUFFormatError
from remote_agent.fit.oom import OomInfo, find_oom
from remote_agent.fit.search import FitFailed, LaunchOutcome

FIT_ERROR = "fit_error"  # the search could not run (no budget, unreadable header, llama-fit-params failed)
FULL_OFFLOAD = 999  # every layer on the GPU: the fit is about context, never about offloading layers
log = logging.getLogger("remote_agent.fit")


def target_of(config: EngineConfig) -> FitTarget:
    return FitTarget(Path(config.model_path), config.engine, config.args, config.parallel,
                     config.batch_size, config.ubatch_size)


async def fit_and_launch(supervisor, config: EngineConfig) -> EngineConfig:
    """Search the ctx for config (a pending FitRequest in config.fit) and leave the result running.

    Raises EngineFailure (the engine is then stopped), NothingFits when not even 256 tokens fit.
    """
    from remote_agent.engine.supervisor import NothingFits

    fitter, request = supervisor.fitter, config.fit
    if fitter is None:
        raise EngineFailure(FIT_ERROR, "ctx auto is not available in this agent; pass a number as ctx")
    target = target_of(config)
    try:
        cfg = run_config(target, cache_type=request.cache_type, on_cpu=fitter.on_cpu)
        budget = await asyncio.to_thread(fitter.budget, request.budget_bytes)
    except (BudgetError, EstimateError) as exc:
        raise EngineFailure(FIT_ERROR, f"{exc}; or pass a number as ctx") from None
    adapter = adapter_for(config.engine)
    base = replace(config, fit=None, ctx=None, gpu_layers=FULL_OFFLOAD, fit_args=tuple(adapter.fit_flags(cfg)))
    loop = asyncio.get_running_loop()
    emit = supervisor._emit

    def progress(data: dict) -> None:  # called in the search's thread
        log.info("fit: %s", data.get("message"))
        loop.call_soon_threadsafe(emit, "progress", dict(data))

    def try_ctx(ctx: int) -> LaunchOutcome:  # called in the search's thread
        attempt = asyncio.run_coroutine_threadsafe(_try_ctx(supervisor, replace(base, ctx=ctx), fitter.on_cpu), loop)
        return attempt.result()

    try:
        result = await asyncio.to_thread(fitter.search, target, cfg, ctx_cap=request.ctx_cap, fresh=request.fresh,
                                         budget=budget, try_ctx=try_ctx, on_progress=progress)
    except FitFailed as exc:
        await _give_up(supervisor, config)
        raise EngineFailure(exc.kind, f"ctx auto: {exc}", supervisor._failed_tail[-20:]) from None
    except (EstimateError, FitParamsError, GGUFFormatError, BudgetError, OSError) as exc:
        await _give_up(supervisor, config)
        raise EngineFailure(FIT_ERROR, f"ctx auto could not estimate {target.model_path.name}: {exc}; "
                            "pass a number as ctx") from None
    supervisor.last_fit = summary(result, budget)
    serving = supervisor.serving
    if result.status != "fits":
        await _give_up(supervisor, config)
        raise NothingFits(result.message)
    if serving is None:  # it loaded, then died before the search returned
        await _give_up(supervisor, config)
        raise EngineFailure("crashed",
                            f"the engine stopped right after loading at ctx {result.ctx}; see logs.tail")
    return serving


async def _try_ctx(supervisor, config: EngineConfig, measure_peak: bool) -> LaunchOutcome:
    await supervisor._stop_engine()  # an earlier attempt that loaded: a probe upward replaces it
    try:
        await supervisor._launch(config)
    except EngineFailure as failure:
        if failure.kind == OOM:
            oom = find_oom(supervisor._failed_tail) or OomInfo(None, "unknown", failure.message)
            return LaunchOutcome(False, oom=oom)
        return LaunchOutcome(False, error=failure.message, error_kind=failure.kind)
    # On the CPU stand-in the peak virtual size is what the limit counts; a GPU's peak is not
    # measured (then the search does not probe upward).
    peak = engine_process.vm_peak_bytes(supervisor._engine.pid) if measure_peak else None
    return LaunchOutcome(True, peak_bytes=peak)


async def _give_up(supervisor, config: EngineConfig) -> None:
    """Leave no half-searched engine running; a later restart searches again (config keeps its fit)."""
    await supervisor._stop_engine()
    supervisor.config = config
