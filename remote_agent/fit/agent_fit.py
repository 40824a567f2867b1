"""The context fit as the daemon runs it: the agent's settings → budget, estimator settings and
cache (plan.plan_ctx), for one engine configuration. The supervisor supplies `try_ctx` (it starts
the engine at a ctx and leaves a success running), so the search's last successful launch is the
configuration that serves.

The run configuration the estimate assumes (cache types, slots, batch sizes, flash attention) is
read from the engine's ARGS and the image environment and then pinned on the engine's command line
(adapter.fit_flags), so what was estimated is what runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from remote_agent.fit.budget import (Budget, BudgetError, EngineOverhead, address_space_budget,
                                     engine_gpu_indices, explicit_budget, gpu_budget, query_gpus)
from remote_agent.fit.estimate import RunConfig
from remote_agent.fit.plan import plan_ctx
from remote_agent.fit.search import FitResult, Progress, TryCtx

# llama.cpp flags that change what a context costs, and the RunConfig field each sets.
_FLAGS = {"-ctk": "cache_type_k", "--cache-type-k": "cache_type_k", "-ctv": "cache_type_v",
          "--cache-type-v": "cache_type_v", "-np": "parallel", "--parallel": "parallel",
          "-ub": "n_ubatch", "--ubatch-size": "n_ubatch", "-b": "n_batch", "--batch-size": "n_batch",
          "-fa": "flash_attn", "--flash-attn": "flash_attn"}


@dataclass(frozen=True)
class FitSettings:
    bin_dir: Path | None
    state_dir: Path | None
    memory_budget: int | None = None
    address_space_limit: int | None = None  # the engine runs on the CPU under RLIMIT_AS (tests)
    overhead: EngineOverhead = EngineOverhead()


@dataclass(frozen=True)
class FitTarget:
    """What the search needs to know about the engine configuration it fits."""
    model_path: Path
    engine: str
    args: tuple[str, ...] = ()
    parallel: int | None = None
    batch_size: int | None = None
    ubatch_size: int | None = None


def run_config(target: FitTarget, *, cache_type: str | None = None, on_cpu: bool = False,
               swa_full: bool = False) -> RunConfig:
    """The memory settings the engine will run with: the environment, then ARGS (llama-server's
    flags; the koboldcpp adapter reads its own and passes cache_type and swa_full), then the
    request. Raises EstimateError for a cache type llama.cpp does not have."""
    values: dict = {"parallel": target.parallel or 1, "n_batch": target.batch_size or 2048,
                    "n_ubatch": target.ubatch_size or 512, "flash_attn": True, "swa_full": swa_full}
    if target.engine == "llama-server":
        args = list(target.args)
        for i, arg in enumerate(args):
            if arg == "--swa-full":
                values["swa_full"] = True
                continue
            flag, eq, inline = arg.partition("=")
            field_name = _FLAGS.get(flag)
            if field_name is None:
                continue
            value = inline if eq else (args[i + 1] if i + 1 < len(args) else None)
            if value is None:
                continue
            if field_name == "flash_attn":
                values[field_name] = value.lower() != "off"
            elif field_name.startswith("cache_type"):
                values[field_name] = value.lower()
            elif value.isdigit():
                values[field_name] = int(value)
    if cache_type:
        values["cache_type_k"] = values["cache_type_v"] = cache_type
    cfg = RunConfig(token_embd_on_device=on_cpu, **values)
    cfg.check()
    return cfg


class AgentFitter:
    def __init__(self, settings: FitSettings) -> None:
        self.settings = settings

    @property
    def on_cpu(self) -> bool:
        return bool(self.settings.address_space_limit)

    def budget(self, budget_bytes: int | None = None) -> Budget:
        """Explicit (request, then --memory-budget), else the address-space limit, else nvidia-smi."""
        s = self.settings
        explicit = budget_bytes or s.memory_budget
        if explicit:
            return explicit_budget(explicit, gpu_name="cpu-explicit" if self.on_cpu else "explicit",
                                   overhead=s.overhead)
        if s.address_space_limit:
            return address_space_budget(s.address_space_limit, s.overhead)
        try:
            return gpu_budget(query_gpus(), engine_gpu_indices())
        except BudgetError as exc:
            raise BudgetError(f"ctx auto needs to know how much memory the engine may use: {exc}") from None

    def search(self, target: FitTarget, cfg: RunConfig, *, ctx_cap: int | None, fresh: bool,
               budget: Budget, try_ctx: TryCtx | None, on_progress: Progress | None = None) -> FitResult:
        return plan_ctx(target.model_path, engine=target.engine, ctx_cap=ctx_cap, cfg=cfg,
                        bin_dir=self.settings.bin_dir, state_dir=self.settings.state_dir, budget=budget,
                        try_ctx=try_ctx, fresh=fresh, on_progress=on_progress)


def summary(result: FitResult, budget: Budget) -> dict:
    """fit.search's answer (and the `fit` field of an auto start or swap)."""
    first = result.attempts[0]["ctx"] if result.attempts and not result.from_cache else None
    return {"status": result.status, "ctx": result.ctx, "launches": result.launches,
            "cached": result.from_cache, "budget_bytes": result.budget_bytes, "free_bytes": result.free_bytes,
            "budget_source": budget.source, "device": budget.gpu_name, "limited_by": result.limited_by,
            "message": result.message, "attempts": result.attempts,
            "estimate": {"first_ctx": first, "need_bytes": result.need_bytes}}
