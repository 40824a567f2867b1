"""The header-only formula lands within 10% of llama.cpp's own llama-fit-params figures."""

from __future__ import annotations

import pytest

from remote_agent.fit.estimate import (EstimateError, FitParamsEstimator, FormulaEstimator,
                                       ModelShape, RunConfig, kv_bytes, parse_fitp_output)
from remote_agent.fit.gguf_meta import GGUFHeader, read_header

CTXS = (256, 4096, 65536, 262144, 1048576)


@pytest.mark.parametrize("model_fixture,cache_type", [
    ("tiny_model", "f16"),
    ("tiny_model_b", "f16"), ("tiny_model_b", "q8_0"), ("tiny_model_b", "q4_0"),
    ("fit_large_model", "q8_0"),
])
def test_formula_within_10_percent_of_llama_fit_params(request, fitp_bin, model_fixture, cache_type):
    model = request.getfixturevalue(model_fixture)
    cfg = RunConfig(cache_type, cache_type, token_embd_on_device=True)  # the CPU build counts it
    formula = FormulaEstimator(ModelShape.from_header(read_header(model)), cfg)
    reference = FitParamsEstimator(fitp_bin, model, cfg)
    for ctx in CTXS:
        ours, theirs = formula.breakdown(ctx), reference.breakdown(ctx)
        assert abs(ours.total - theirs.total) <= 0.10 * theirs.total, (ctx, ours, theirs)
        # the KV cache itself is exact (to llama-fit-params' MiB rounding)
        assert abs(ours.kv - theirs.kv) <= 1 << 20, (ctx, ours, theirs)


def test_formula_without_flash_attention_counts_the_score_matrix(fitp_bin, tiny_model_b):
    cfg = RunConfig(flash_attn=False, token_embd_on_device=True)
    formula = FormulaEstimator(ModelShape.from_header(read_header(tiny_model_b)), cfg)
    theirs = FitParamsEstimator(fitp_bin, tiny_model_b, cfg).bytes_at(131072)
    assert abs(formula.bytes_at(131072) - theirs) <= 0.10 * theirs


def test_quantized_cache_with_a_head_size_it_cannot_pack_is_a_clear_error(tiny_model):
    shape = ModelShape.from_header(read_header(tiny_model))  # head size 16
    with pytest.raises(EstimateError, match="divisible by 32.*use f16"):
        FormulaEstimator(shape, RunConfig("q8_0", "q8_0"))


def test_sliding_window_layers_hold_only_the_window_and_heads_vary_per_layer():
    # A gemma3-like header: 6 layers, every 6th full attention, per-layer KV heads.
    meta = {"general.architecture": "gemma3", "gemma3.block_count": 6, "gemma3.embedding_length": 256,
            "gemma3.attention.head_count": 8, "gemma3.attention.head_count_kv": [4, 4, 4, 4, 4, 2],
            "gemma3.attention.key_length": 64, "gemma3.attention.value_length": 64,
            "gemma3.attention.sliding_window": 1024, "gemma3.context_length": 131072}
    shape = ModelShape.from_header(GGUFHeader(3, meta, []))
    assert shape.swa_layers == (True, True, True, True, True, False)
    cfg = RunConfig(parallel=2, n_ubatch=512)
    per_cell = {il: shape.n_head_kv[il] * 64 * 2 * 2 for il in range(6)}  # K+V, f16
    window = 1024 * 2 + 512  # n_swa·n_seq + n_ubatch, padded to 256 = 2560
    ctx = 65536
    expected = sum(per_cell[il] * window for il in range(5)) + per_cell[5] * ctx
    assert kv_bytes(shape, cfg, ctx) == expected
    # below the window every layer holds the whole context
    assert kv_bytes(shape, cfg, 1024) == sum(per_cell.values()) * 1024


def test_fitp_output_with_a_gpu_line():
    assert parse_fitp_output("CUDA0 40123 8192 1024\nHost 250 0 40\n") == {
        "CUDA0": (40123, 8192, 1024), "Host": (250, 0, 40)}
