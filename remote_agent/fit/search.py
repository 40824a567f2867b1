"""Find the largest context that keeps the whole model in device memory, in as few launches as
possible: predict it from the estimate, launch once, and only on failure learn and retry.

The search drives an abstract launcher, `try_ctx(ctx) -> LaunchOutcome`, so the daemon (which
keeps the last successful launch serving) and bench/ctx_fit.py drive the same code.

- The first launch is the largest multiple of 256 whose predicted need fits the budget, capped by
  CTX and the model's trained context.
- On an out-of-memory failure the log says how big the failed allocation was (oom.py). Everything
  allocated before it fit, so the real need overshot the budget by at most that allocation plus
  what comes after it: the search shifts its prediction by that much and recomputes (never halves).
- On success, when the launcher measured the engine's peak and the corrected prediction leaves
  large slack, it probes upward at most once; a failed probe relaunches the proven context, so
  the final configuration has always loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from remote_agent.fit.budget import Budget
from remote_agent.fit.estimate import Estimator
from remote_agent.fit.oom import OomInfo, format_bytes

STEP = 256
SAFETY_FRACTION = 0.01  # of the budget, kept free by the first prediction (an OOM costs a launch)
SLACK_FRACTION = 0.05   # probe upward only when the corrected prediction is this much larger


@dataclass
class LaunchOutcome:
    ok: bool
    oom: OomInfo | None = None
    peak_bytes: int | None = None  # the engine's measured peak, when the launcher can measure it
    error: str | None = None       # a failure that is not out-of-memory (bad model, crash, …)
    error_kind: str | None = None


TryCtx = Callable[[int], LaunchOutcome]
Progress = Callable[[dict], None]


class FitFailed(RuntimeError):
    """The engine failed for a reason other than memory; searching further would not help."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class FitResult:
    status: str                 # "fits" | "nothing_fits" | "estimated" (no launcher given)
    ctx: int | None
    launches: int
    need_bytes: int             # predicted need at ctx (at 256 when nothing fits)
    budget_bytes: int
    free_bytes: int
    limited_by: str             # "memory" | "ctx_cap" | "trained_ctx"
    message: str
    from_cache: bool = False
    attempts: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def largest_fitting_ctx(need: Callable[[int], int], budget: int, lo: int, hi: int) -> int | None:
    """Largest multiple of STEP in [lo, hi] with need(ctx) <= budget, or None if even lo does not fit.

    need is monotone and piecewise linear (the compute buffer switches from logits-bound to
    attention-bound), so regula falsi on the bracket converges in a few evaluations — which
    matters when each one runs llama-fit-params; bisection steps keep a one-sided stall bounded.
    """
    lo, hi = _down(lo), _down(hi)
    if hi < lo or need(lo) > budget:
        return None
    if need(hi) <= budget:
        return hi
    a, b = lo, hi  # need(a) <= budget < need(b)
    na, nb = need(a), need(b)
    interpolate = True
    while b - a > STEP:
        if interpolate and nb != na:
            c = _down(a + (budget - na) * (b - a) // (nb - na))
        else:
            c = _down((a + b) // 2)
        c = min(max(c, a + STEP), b - STEP)
        nc = need(c)
        # Check the neighbour across the predicted root: on a linear stretch that settles it in
        # two evaluations instead of creeping in from one side.
        if nc <= budget:
            a, na = c, nc
            if interpolate and c + STEP < b:
                n_next = need(c + STEP)
                if n_next > budget:
                    return c
                a, na = c + STEP, n_next
        else:
            b, nb = c, nc
            if interpolate and c - STEP > a:
                n_prev = need(c - STEP)
                if n_prev <= budget:
                    return c - STEP
                b, nb = c - STEP, n_prev
        interpolate = not interpolate  # alternate with bisection so a kink cannot stall it
    return a


def _down(ctx: int) -> int:
    return ctx // STEP * STEP


def search_ctx(estimator: Estimator, budget: Budget, try_ctx: TryCtx | None, *, ctx_cap: int,
               trained_ctx: int | None = None, on_progress: Progress | None = None,
               max_launches: int = 8, safety_fraction: float = SAFETY_FRACTION,
               slack_fraction: float = SLACK_FRACTION) -> FitResult:
    """Search the largest ctx that loads; see the module docstring for the strategy."""
    progress = on_progress or (lambda event: None)
    cap, limited_by = _down(ctx_cap), "ctx_cap"
    if trained_ctx and _down(trained_ctx) < cap:
        cap, limited_by = _down(trained_ctx), "trained_ctx"
    cap = max(cap, STEP)
    # What the real engine needs beyond the prediction, learned from launches: an OOM adds an
    # upper bound on the overshoot; a measured peak at ref_ctx replaces everything. How a measured
    # gap grows with ctx is unknown (a fixed cost, or per-token bookkeeping), so half of it is
    # assumed to scale with ctx: probing upward errs on the low side.
    shift, peak_gap, ref_ctx = 0, 0, STEP

    def need(ctx: int) -> int:
        learned = peak_gap // 2 + peak_gap * ctx // (2 * ref_ctx) if peak_gap > 0 else peak_gap
        return estimator.bytes_at(ctx) + budget.overhead.at(ctx) + shift + learned

    target = budget.bytes - int(budget.bytes * safety_fraction)
    ctx = largest_fitting_ctx(need, target, STEP, cap)
    if ctx is None:
        ctx = largest_fitting_ctx(need, budget.bytes, STEP, cap)  # tight: worth one try
    if ctx is None:
        return _nothing_fits(need(STEP), budget, 0, [], progress)
    if try_ctx is None:
        return FitResult("estimated", ctx, 0, need(ctx), budget.bytes, budget.free_bytes,
                         limited_by if ctx >= cap else "memory", f"fits at about {ctx} tokens (estimate)")

    attempts: list[dict] = []
    proven: int | None = None      # largest ctx that loaded
    failed_at = cap + STEP          # smallest ctx that ran out of memory
    probed = False
    last_ok = False
    while len(attempts) < max_launches:
        progress({"phase": "fit", "ctx": ctx, "message": f"trying {ctx}"})
        outcome = try_ctx(ctx)
        attempts.append({"ctx": ctx, "ok": outcome.ok, "peak_bytes": outcome.peak_bytes,
                         "failed_bytes": outcome.oom.failed_bytes if outcome.oom else None})
        last_ok = outcome.ok
        if outcome.ok:
            proven = ctx
            if outcome.peak_bytes is not None:
                shift, peak_gap, ref_ctx = 0, 0, ctx
                peak_gap = outcome.peak_bytes - need(ctx)
            progress({"phase": "fit", "ctx": ctx, "message": f"{ctx} loads"})
            # Without a measured peak there is nothing to learn from; and asking the estimator now would
            # run llama-fit-params beside a loaded engine, which on a full GPU may not get a context.
            if probed or ctx >= cap or ctx + STEP >= failed_at or outcome.peak_bytes is None:
                break
            up = largest_fitting_ctx(need, budget.bytes - int(budget.bytes * safety_fraction / 2),
                                     ctx, min(cap, failed_at - STEP))
            if up is None or up < ctx + max(STEP, int(ctx * slack_fraction)):
                break
            probed, ctx = True, up
            progress({"phase": "fit", "ctx": ctx, "message": f"large slack: probing {ctx} once"})
            continue
        if outcome.oom is None:
            raise FitFailed(outcome.error_kind or "crashed",
                            outcome.error or f"the engine failed at ctx {ctx} for a reason other than memory")
        failed_at = min(failed_at, ctx)
        deficit = _deficit(estimator, budget, ctx, outcome.oom, need(ctx))
        shift += deficit
        progress({"phase": "fit", "ctx": ctx, "failed_bytes": outcome.oom.failed_bytes,
                  "message": f"OOM at {ctx}: {outcome.oom.describe()}; needed up to "
                             f"{format_bytes(deficit)} more"})
        if proven is not None and (probed or failed_at - proven <= STEP):
            ctx = proven  # the probe failed: go back to what loaded
            continue
        nxt = largest_fitting_ctx(need, target, STEP, failed_at - STEP)
        if nxt is None:
            nxt = largest_fitting_ctx(need, budget.bytes, STEP, failed_at - STEP)
        if nxt is None:
            if proven is not None:
                ctx = proven
                continue
            return _nothing_fits(need(STEP), budget, len(attempts), attempts, progress)
        ctx = max(nxt, proven or 0)
    if not last_ok:
        if proven is None:
            return _nothing_fits(need(STEP), budget, len(attempts), attempts, progress)
        raise FitFailed("oom", f"gave up after {len(attempts)} launches; {proven} loaded earlier")
    final_limit = "memory" if proven < cap else limited_by
    message = f"ctx {proven} fits ({'the ' + final_limit.replace('_', ' ') + ' allows no more' if final_limit != 'memory' else 'largest that fits the memory budget'}); {len(attempts)} launch{'es' if len(attempts) != 1 else ''}"
    progress({"phase": "fit", "ctx": proven, "message": message})
    return FitResult("fits", proven, len(attempts), need(proven), budget.bytes, budget.free_bytes,
                     final_limit, message, attempts=attempts)


def _deficit(estimator: Estimator, budget: Budget, ctx: int, oom: OomInfo, predicted: int) -> int:
    """How much more than predicted the engine needed at ctx, at most (see module docstring).

    Allocation order is weights, KV cache, compute buffer: what was allocated before the failed
    buffer fit, so the overshoot is at most the failed buffer plus the buffers after it. Without
    a size in the log, assume the whole context-dependent part was the problem (a quarter more).
    """
    if oom.failed_bytes is None:
        return max(predicted // 4, 64 << 20)
    after = 0
    breakdown = getattr(estimator, "breakdown", None)
    if oom.buffer == "kv" and breakdown is not None:
        after = breakdown(ctx).compute
    return oom.failed_bytes + after


def _nothing_fits(need_bytes: int, budget: Budget, launches: int, attempts: list, progress: Progress) -> FitResult:
    message = (f"model needs {format_bytes(need_bytes)} even at {STEP} tokens, "
               f"{'the GPU has' if budget.source == 'nvidia-smi' else 'the budget is'} "
               f"{format_bytes(budget.free_bytes)} free")
    progress({"phase": "fit", "ctx": None, "message": message})
    return FitResult("nothing_fits", None, launches, need_bytes, budget.bytes, budget.free_bytes,
                     "memory", message, attempts=attempts)
