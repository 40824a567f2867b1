"""The seam for the daemon: everything the context fit needs from the agent's settings, in one
call, without launching anything (the supervisor launches).

`plan_ctx` picks the estimator (llama-fit-params from the engine's bin dir when present, else the
header formula), the budget (an explicit one, the engine's address-space limit on the CPU stand-in,
else nvidia-smi) and a remembered result, and returns a FitResult whose ctx the supervisor starts.
The full loop (recompute after an OOM, one probe upward) runs when a `try_ctx` is given: the
daemon's comes from remote_agent/engine/fit_launch.py (it starts the engine through the supervisor),
with the budget and run configuration from fit/agent_fit.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from remote_agent.fit.budget import (Budget, EngineOverhead, address_space_budget, engine_gpu_indices,
                                     explicit_budget, gpu_budget, query_gpus)
from remote_agent.fit.cache import FitCache, cache_key, fit_with_cache
from remote_agent.fit.estimate import (Estimator, FitParamsEstimator, FormulaEstimator, ModelShape,
                                       RunConfig)
from remote_agent.fit.gguf_meta import read_header
from remote_agent.fit.search import FitResult, Progress, TryCtx

DEFAULT_CTX_CAP = 1 << 20


def find_fit_params(bin_dir: Path | None) -> Path | None:
    if bin_dir is not None and (Path(bin_dir) / "llama-fit-params").exists():
        return Path(bin_dir) / "llama-fit-params"
    found = shutil.which("llama-fit-params")
    return Path(found) if found else None


def choose_budget(*, memory_budget: int | None = None, address_space_limit: int | None = None,
                  overhead: EngineOverhead | None = None) -> Budget:
    if memory_budget:
        return explicit_budget(memory_budget, overhead=overhead or EngineOverhead())
    if address_space_limit:
        return address_space_budget(address_space_limit, overhead or EngineOverhead())
    return gpu_budget(query_gpus(), engine_gpu_indices())


def choose_estimator(model: Path, cfg: RunConfig, bin_dir: Path | None, engine: str) -> Estimator:
    fitp = find_fit_params(bin_dir) if engine == "llama-server" else None
    if fitp is not None:
        return FitParamsEstimator(fitp, model, cfg)
    return FormulaEstimator(ModelShape.from_header(read_header(model)), cfg)


def plan_ctx(model: Path, *, engine: str = "llama-server", ctx_cap: int | None = None,
             cfg: RunConfig | None = None, bin_dir: Path | None = None, state_dir: Path | None = None,
             budget: Budget | None = None, try_ctx: TryCtx | None = None, fresh: bool = False,
             on_progress: Progress | None = None) -> FitResult:
    """The ctx to start `model` with (estimate only unless try_ctx is given)."""
    cfg = cfg or RunConfig(token_embd_on_device=budget is not None and budget.source == "address-space")
    budget = budget or choose_budget()
    header = read_header(model)
    trained = int(header.arch_value("context_length", 0) or 0) or None
    estimator = choose_estimator(model, cfg, bin_dir, engine)
    cache = FitCache(state_dir) if state_dir is not None else None
    return fit_with_cache(cache, cache_key(model, budget, engine, cfg), estimator, budget, try_ctx,
                          ctx_cap=ctx_cap or DEFAULT_CTX_CAP, trained_ctx=trained, fresh=fresh,
                          on_progress=on_progress)
