"""The search against a real llama-server whose memory is an address-space limit."""

from __future__ import annotations

import pytest

from remote_agent.fit.budget import EngineOverhead, address_space_budget
from remote_agent.fit.cache import FitCache, cache_key, fit_with_cache
from remote_agent.fit.estimate import FitParamsEstimator, RunConfig
from remote_agent.fit.search import search_ctx
from tests.testbed.fit_standin import AddressSpaceLauncher

MiB = 1 << 20
CFG = RunConfig(token_embd_on_device=True)
pytestmark = pytest.mark.timeout(180)


def setup(llama_bin, fitp_bin, model, limit, cfg=CFG):
    return (FitParamsEstimator(fitp_bin, model, cfg), AddressSpaceLauncher(llama_bin, model, limit, cfg))


def test_finds_a_ctx_that_loads_in_one_launch_and_close_to_the_limit(
        llama_bin, fitp_bin, fit_large_model, standin_overhead):
    limit = 900 * MiB
    estimator, launcher = setup(llama_bin, fitp_bin, fit_large_model, limit)
    events = []
    result = search_ctx(estimator, address_space_budget(limit, standin_overhead), launcher,
                        ctx_cap=4 * 1048576, on_progress=events.append)
    assert result.status == "fits" and result.launches == 1 == len(launcher.launches)
    assert launcher(result.ctx).ok                            # the final config loads
    assert not launcher(int(result.ctx * 1.08) // 256 * 256).ok  # and 8% more does not: near the max
    assert events[0]["message"] == f"trying {result.ctx}"


def test_an_oom_is_recomputed_from_the_failed_allocation_not_halved(
        llama_bin, fitp_bin, fit_large_model, standin_overhead):
    limit = 900 * MiB
    estimator, launcher = setup(llama_bin, fitp_bin, fit_large_model, limit)
    # Hide the engine's overhead from the budget: the first prediction overshoots and OOMs.
    naive = address_space_budget(limit, EngineOverhead())
    events = []
    result = search_ctx(estimator, naive, launcher, ctx_cap=4 * 1048576, on_progress=events.append)
    assert result.status == "fits"
    assert result.attempts[0]["ok"] is False and result.attempts[0]["failed_bytes"] > 0
    assert result.attempts[-1]["ok"] is True and result.attempts[-1]["ctx"] == result.ctx
    assert result.launches <= 3
    # the retry drops by the failed allocation (an upper bound on the overshoot), so it loads
    assert result.attempts[1]["ok"] is True
    assert any(e["message"].startswith(f"OOM at {result.attempts[0]['ctx']}: ") and "more" in e["message"]
               for e in events)
    # still close to what the calibrated search finds
    calibrated = search_ctx(estimator, address_space_budget(limit, standin_overhead), None, ctx_cap=4 * 1048576)
    assert result.ctx >= 0.9 * calibrated.ctx


def test_ctx_cap_is_respected(llama_bin, fitp_bin, fit_small_model, standin_overhead):
    limit = 900 * MiB
    estimator, launcher = setup(llama_bin, fitp_bin, fit_small_model, limit)
    result = search_ctx(estimator, address_space_budget(limit, standin_overhead), launcher, ctx_cap=50000)
    assert result.ctx == 49920 and result.limited_by == "ctx_cap" and launcher.launches == [49920]


def test_trained_context_caps_the_search(llama_bin, fitp_bin, tiny_model, standin_overhead):
    estimator, launcher = setup(llama_bin, fitp_bin, tiny_model, 900 * MiB)
    result = search_ctx(estimator, address_space_budget(900 * MiB, standin_overhead), launcher,
                        ctx_cap=1048576, trained_ctx=4096)
    assert (result.ctx, result.limited_by, result.launches) == (4096, "trained_ctx", 1)


def test_nothing_fits_says_what_the_model_needs_and_what_is_free(
        llama_bin, fitp_bin, fit_large_model, standin_overhead):
    limit = 80 * MiB
    estimator, launcher = setup(llama_bin, fitp_bin, fit_large_model, limit)
    result = search_ctx(estimator, address_space_budget(limit, standin_overhead), launcher, ctx_cap=32768)
    assert result.status == "nothing_fits" and result.ctx is None
    assert result.message.startswith("model needs ") and "80 MiB free" in result.message
    assert result.need_bytes > limit and launcher.launches == []  # no crash loop, not even one


def test_a_remembered_fit_skips_the_search(llama_bin, fitp_bin, fit_small_model, standin_overhead, tmp_path):
    limit = 700 * MiB
    cfg = RunConfig("q8_0", "q8_0", token_embd_on_device=True)
    budget = address_space_budget(limit, standin_overhead)
    key = cache_key(fit_small_model, budget, "llama-server", cfg)
    cache = FitCache(tmp_path / "state")
    estimator, launcher = setup(llama_bin, fitp_bin, fit_small_model, limit, cfg)
    first = fit_with_cache(cache, key, estimator, budget, launcher, ctx_cap=4 * 1048576)
    assert first.status == "fits" and not first.from_cache

    estimator2, launcher2 = setup(llama_bin, fitp_bin, fit_small_model, limit, cfg)
    again = fit_with_cache(FitCache(tmp_path / "state"), key, estimator2, budget, launcher2, ctx_cap=4 * 1048576)
    assert again.from_cache and again.ctx == first.ctx
    assert launcher2.launches == [first.ctx] and estimator2.calls == 0  # one launch, no estimate
    # asking fresh searches again
    fresh = fit_with_cache(cache, key, estimator2, budget, launcher2, ctx_cap=4 * 1048576, fresh=True)
    assert not fresh.from_cache and estimator2.calls > 0
    # another cache type is another key
    assert cache_key(fit_small_model, budget, "llama-server", CFG) != key
