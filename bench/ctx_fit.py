"""Context fit, the headline figure: launches to find the largest context that loads, podtui's
search against seed 000's binary search, on the CPU stand-in (llama-server under RLIMIT_AS).

For every case (address-space budget × model × KV cache type) it finds the true largest ctx by its
own fine search (binary search on launches, 256-token steps), runs a seed-000-style search (start
at CTX = 1M; after a crash, binary search downward for the largest ctx that loads, relaunching it
if the last try failed; replayed against the measured true max, since loading is monotone in ctx,
rather than relaunched) and podtui's search (remote_agent.fit), then launches podtui's final ctx
once more to check it loads. The stand-in's engine overhead is calibrated once, up front, on
another model (tiny-a), as it would be once per engine build and machine.

Run: .venv/bin/python bench/ctx_fit.py [--quick]    (a few minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from remote_agent.fit.budget import address_space_budget  # noqa: E402
from remote_agent.fit.estimate import FitParamsEstimator, RunConfig  # noqa: E402
from remote_agent.fit.search import STEP, search_ctx  # noqa: E402
from tests.testbed.fit_standin import FIT_LARGE, FIT_SMALL, AddressSpaceLauncher, calibrate_overhead, fit_model  # noqa: E402
from tests.testbed import cache, models  # noqa: E402

MiB = 1 << 20
CTX = 1048576


def true_max(launcher: AddressSpaceLauncher, cap: int) -> int:
    lo, hi = 0, cap // STEP
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if launcher(mid * STEP).ok:
            lo = mid
        else:
            hi = mid - 1
    return lo * STEP


def seed_search(loads, cap: int) -> tuple[int, int]:
    """Seed 000: start at CTX; on a crash, binary search for the largest ctx that loads."""
    if loads(cap):
        return cap, 1
    n, lo, hi, last_ok = 1, 0, cap // STEP - 1, False
    while lo < hi:
        mid = (lo + hi + 1) // 2
        n += 1
        last_ok = loads(mid * STEP)
        if last_ok:
            lo = mid
        else:
            hi = mid - 1
    if lo and not last_ok:
        n += 1  # relaunch the largest ctx that loaded, to serve it
    return lo * STEP, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two budgets instead of three")
    args = parser.parse_args()
    bin_dir = cache.llama_bin_dir()
    budgets_mib = (500, 1000) if args.quick else (450, 800, 1600)
    started = time.monotonic()
    overhead = calibrate_overhead(bin_dir, models.ensure_model(models.TINY_A), RunConfig(token_embd_on_device=True))
    print(f"calibration (once, on tiny-a, 2 launches): engine overhead {overhead.base_bytes / MiB:.0f} MiB "
          f"+ {overhead.per_token_bytes:.0f} B/token\n")
    header = ("| budget | model | KV cache | true max | seed: launches | seed: final | "
              "podtui: launches | podtui: final | final / true max | final OOM? | fit-params calls |")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    rows = []
    for budget_mib in budgets_mib:
        for spec in (FIT_SMALL, FIT_LARGE):
            model = fit_model(spec)
            for cache_type in ("f16", "q8_0"):
                cfg = RunConfig(cache_type, cache_type, token_embd_on_device=True)
                limit = budget_mib * MiB
                truth = true_max(AddressSpaceLauncher(bin_dir, model, limit, cfg), CTX)
                # Loading is monotone in ctx (the fine search relies on it too), so the seed's
                # binary search is replayed against the measured true max instead of relaunched.
                seed_final, seed_n = seed_search(lambda ctx: ctx <= truth, CTX)
                launcher = AddressSpaceLauncher(bin_dir, model, limit, cfg)
                estimator = FitParamsEstimator(bin_dir / "llama-fit-params", model, cfg)
                result = search_ctx(estimator, address_space_budget(limit, overhead), launcher,
                                    ctx_cap=CTX, trained_ctx=spec.context_length)
                final_oom = result.ctx is None or not AddressSpaceLauncher(bin_dir, model, limit, cfg)(result.ctx).ok
                ratio = (result.ctx or 0) / truth if truth else 0.0
                rows.append((seed_n, result.launches, ratio, final_oom))
                print(f"| {budget_mib} MiB | {spec.name} | {cache_type} | {truth} | {seed_n} | {seed_final} | "
                      f"{result.launches} | {result.ctx} | {ratio:.1%} | {'YES' if final_oom else 'no'} | "
                      f"{estimator.calls} |", flush=True)
    seed_mean = statistics.mean(r[0] for r in rows)
    ours_mean = statistics.mean(r[1] for r in rows)
    print(f"\nmean launches: seed {seed_mean:.2f}, podtui {ours_mean:.2f} "
          f"({seed_mean / ours_mean:.1f}x fewer; goal <= 1.5)")
    print(f"final / true max: min {min(r[2] for r in rows):.1%}, mean {statistics.mean(r[2] for r in rows):.1%} "
          f"(goal >= 95%); final configs that OOM: {sum(r[3] for r in rows)} of {len(rows)} (goal 0)")
    print(f"wall time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
