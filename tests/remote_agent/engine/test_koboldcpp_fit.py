"""What a context fit assumes for koboldcpp, learned from the installed binary: the real 1.76 (no
--useswa, --quantkv 0/1/2) and a double of 1.102's argument parser (with --useswa). The fit's
estimate must be what the engine then allocates: a quantized cache only with --quantkv, a
sliding-window cache only with --useswa."""

from __future__ import annotations

from pathlib import Path

import pytest

from remote_agent.engine.adapters import adapter_for
from remote_agent.engine.adapters.base import EngineConfig, EngineFailure
from remote_agent.engine.adapters.koboldcpp_caps import parse_help, probe, with_ctx_limits
from remote_agent.engine.ctx import FitRequest
from remote_agent.fit.agent_fit import FitTarget, run_config
from remote_agent.fit.budget import explicit_budget
from remote_agent.fit.estimate import FormulaEstimator, ModelShape
from remote_agent.fit.gguf_meta import read_header
from remote_agent.fit.search import search_ctx
from tests.testbed.koboldcpp import newer_koboldcpp_double

pytestmark = pytest.mark.timeout(60)
GiB = 1 << 30


@pytest.fixture(scope="module")
def gemma3_like(tmp_path_factory) -> Path:
    """A GGUF header shaped like a small gemma3 (sliding window 1024, every 6th layer global, trained
    to 131,072 tokens); its tensors are placeholders: it is estimated, never loaded."""
    import gguf
    import numpy as np

    path = tmp_path_factory.mktemp("gemma3") / "gemma3-like.gguf"
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_context_length(131072)
    writer.add_embedding_length(1152)
    writer.add_block_count(26)
    writer.add_head_count(4)
    writer.add_head_count_kv(1)
    writer.add_key_length(256)
    writer.add_value_length(256)
    writer.add_sliding_window(1024)
    writer.add_uint32("gemma3.vocab_size", 262144)
    writer.add_tensor("token_embd.weight", np.zeros((16, 16), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def config_for(model: Path, args: tuple[str, ...] = (), cache_type: str | None = None) -> EngineConfig:
    return EngineConfig(engine="koboldcpp", model=str(model), model_path=str(model), port=5001, args=args,
                        fit=FitRequest(cache_type=cache_type))


def planned_ctx(model: Path, limits, budget_bytes: int) -> tuple[int, int]:
    """(the ctx the search would launch first, its estimated bytes) under limits."""
    cfg = run_config(FitTarget(model, "koboldcpp"), cache_type=limits.cache_type, swa_full=limits.swa_full)
    shape = ModelShape.from_header(read_header(model))
    estimator = FormulaEstimator(shape, cfg)
    result = search_ctx(estimator, explicit_budget(budget_bytes), None, ctx_cap=limits.ctx_max,
                        trained_ctx=shape.trained_ctx)
    return result.ctx, estimator.bytes_at(result.ctx)


def test_the_adapter_learns_1_76s_limits_from_the_binary(koboldcpp_bin):
    caps = probe(str(koboldcpp_bin))
    assert caps.version == "1.76" and (caps.ctx_min, caps.ctx_max, caps.ctx_choices) == (256, 262144, None)
    assert caps.quantkv_levels == (0, 1, 2)
    assert not caps.has("--useswa") and not caps.has("--defaultgenamt") and caps.has("--flashattention")
    assert probe(str(koboldcpp_bin)) is caps  # once per binary


def test_an_older_koboldcpp_with_a_list_of_sizes_is_held_to_that_list():
    caps = with_ctx_limits(parse_help("KoboldCpp Server - Version 1.50\n--contextsize --quantkv"),
                           "error: argument --contextsize: invalid choice: 2147483647 "
                           "(choose from 256, 512, 1024, 2048, 4096, 8192, 16384)")
    assert (caps.ctx_max, caps.largest_ctx_at_most(6000)) == (16384, 4096)
    assert "only these context sizes" in caps.ctx_problem(3000) and caps.ctx_problem(2048) is None


@pytest.mark.parametrize("cache_type, flags", [("f16", []), ("q8_0", ["--quantkv", "1"]),
                                               ("q4_0", ["--quantkv", "2"])])
def test_a_requested_cache_type_becomes_its_quantkv_level(koboldcpp_bin, gemma3_like, cache_type, flags):
    adapter = adapter_for("koboldcpp")
    limits = adapter.fit_limits(config_for(gemma3_like), koboldcpp_bin.parent, cache_type)
    cfg = run_config(FitTarget(gemma3_like, "koboldcpp"), cache_type=limits.cache_type, swa_full=limits.swa_full)
    assert (cfg.cache_type_k, cfg.cache_type_v) == (cache_type, cache_type)
    assert adapter.fit_flags(cfg) == flags


def test_other_cache_types_are_refused_naming_what_koboldcpp_offers(koboldcpp_bin, gemma3_like):
    with pytest.raises(EngineFailure) as caught:
        adapter_for("koboldcpp").check(config_for(gemma3_like, cache_type="q5_0"), koboldcpp_bin.parent)
    assert caught.value.code == "unsupported"
    assert "f16 (--quantkv 0), q8_0 (--quantkv 1), q4_0 (--quantkv 2)" in caught.value.message


def test_quantkv_in_args_sets_the_cache_type_the_estimate_assumes(koboldcpp_bin, gemma3_like):
    adapter = adapter_for("koboldcpp")
    f16 = adapter.fit_limits(config_for(gemma3_like), koboldcpp_bin.parent, None)
    q8 = adapter.fit_limits(config_for(gemma3_like, args=("--quantkv", "1")), koboldcpp_bin.parent, None)
    assert (f16.cache_type, q8.cache_type) == ("f16", "q8_0")
    # The same budget holds more context with the smaller cache: the estimate follows ARGS.
    assert planned_ctx(gemma3_like, q8, GiB)[0] > planned_ctx(gemma3_like, f16, GiB)[0]


def test_without_useswa_the_fit_estimates_the_full_sliding_window_cache(koboldcpp_bin, gemma3_like, tmp_path):
    adapter = adapter_for("koboldcpp")
    old = adapter.fit_limits(config_for(gemma3_like), koboldcpp_bin.parent, None)       # 1.76: no --useswa
    newer_koboldcpp_double(tmp_path)
    new = adapter.fit_limits(config_for(gemma3_like), tmp_path, None)                   # 1.102's parser
    assert (old.swa_full, old.flags) == (True, ())
    assert (new.swa_full, new.flags) == (False, ("--useswa",))
    # The case: with the window (--useswa) all 131,072 tokens fit a 1.25 GiB budget; a full
    # cache at that size needs 3.8 GiB (3.0x), so 1.76 gets a smaller ctx that fits.
    budget = 1280 << 20
    new_ctx, _ = planned_ctx(gemma3_like, new, budget)
    old_ctx, old_bytes = planned_ctx(gemma3_like, old, budget)
    full_cfg = run_config(FitTarget(gemma3_like, "koboldcpp"), swa_full=True)
    full_at_new = FormulaEstimator(ModelShape.from_header(read_header(gemma3_like)), full_cfg).bytes_at(new_ctx)
    assert new_ctx == 131072 and full_at_new > 3 * budget
    assert old_ctx < new_ctx and old_bytes <= budget


def test_a_model_without_a_window_never_gets_useswa(tiny_model, tmp_path):
    newer_koboldcpp_double(tmp_path)
    limits = adapter_for("koboldcpp").fit_limits(config_for(tiny_model), tmp_path, None)
    assert limits.flags == ()  # --useswa would only turn context shifting off
