"""The failure classifier's rule table, fed the real lines each rule was written for, and the
situations from issue 16 where a harmless warning or an unlisted CUDA line misled it."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from remote_agent.engine.adapters import adapter_for
from remote_agent.engine.adapters.classify import IGNORED, RULES, classify, rules_table
from remote_agent.fit.budget import explicit_budget
from remote_agent.fit.oom import find_oom
from remote_agent.fit.search import LaunchOutcome, search_ctx

ABRT = -signal.SIGABRT
PINNED = "ggml_cuda_host_malloc: failed to allocate 1900.00 MiB of pinned memory: invalid argument"
README = Path(__file__).resolve().parents[3] / "README.md"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.kind}:{r.example[:40]}")
@pytest.mark.parametrize("engine", ["llama-server", "koboldcpp"])
def test_each_rules_own_example_is_classified_as_its_kind_with_its_advice(rule, engine):
    failure = classify(engine, 1, ["loading", rule.example, "exiting"])
    assert failure.code == rule.kind
    assert rule.example.strip() in failure.message and rule.advice in failure.message


def test_the_pinned_memory_warning_does_not_make_a_later_assert_an_oom():
    lines = ["llama_model_load: loading model", PINNED, "llama_kv_cache: CUDA0 KV buffer size = 512.00 MiB",
             "/llama.cpp/ggml/src/ggml-cuda/ggml-cuda.cu:70: GGML_ASSERT(ok) failed",
             "/usr/local/lib/libggml-base.so(+0x16b8b)[0x7f5e4a3a3b8b]"]
    failure = adapter_for("llama-server").classify(ABRT, lines)
    assert failure.code == "crashed"
    assert "SIGABRT" in failure.message and "ggml-cuda.cu:70: GGML_ASSERT(ok) failed" in failure.message
    assert find_oom(lines) is None


def test_the_pinned_memory_warning_before_an_unknown_architecture_is_a_bad_model_not_an_oom():
    lines = [PINNED, "llama_model_load: error loading model: error loading model architecture: "
                     "unknown model architecture: 'gemma4'",
             "llama_model_load_from_file_impl: failed to load model"]
    failure = adapter_for("llama-server").classify(1, lines)
    assert failure.code == "bad_model"
    assert "'gemma4'" in failure.message and "does not support the model's architecture" in failure.message
    assert "download it again" not in failure.message


def test_a_cublas_allocation_failure_is_an_oom_of_unknown_size():
    lines = ["CUDA error: the resource allocation failed",
             "  current device: 0, in function cublas_handle at ggml-cuda/common.cuh:1177",
             "  cublasCreate_v2(&cublas_handles[device])",
             "/llama.cpp/ggml/src/ggml-cuda/ggml-cuda.cu:89: CUDA error"]
    assert adapter_for("llama-server").classify(ABRT, lines).code == "oom"
    oom = find_oom(lines)
    assert oom is not None and oom.failed_bytes is None


def test_ctx_auto_retries_lower_after_a_cublas_failure_and_ends_loaded():
    """The search, driven as the daemon drives it: a launch whose log shows the cuBLAS failure is an
    OOM of unknown size, so it recomputes lower instead of stopping after one launch."""
    class Linear:  # 100 MiB of weights, 1 MiB per 256 tokens
        def bytes_at(self, ctx: int) -> int:
            return (100 << 20) + (ctx // 256) * (1 << 20)

    cublas = ["CUDA error: the resource allocation failed", "  cublasCreate_v2(&cublas_handles[device])"]
    tried = []

    def try_ctx(ctx: int) -> LaunchOutcome:
        tried.append(ctx)
        if len(tried) == 1:
            failure = classify("llama-server", ABRT, cublas)
            assert failure.code == "oom"
            return LaunchOutcome(False, oom=find_oom(cublas))
        return LaunchOutcome(True)

    result = search_ctx(Linear(), explicit_budget(200 << 20), try_ctx, ctx_cap=1 << 20)
    assert result.status == "fits" and len(tried) == 2 and tried[1] < tried[0] and result.ctx == tried[1]


def test_koboldcpps_own_lines_from_a_real_1_76_exit_3():
    kobold = adapter_for("koboldcpp")
    junk = kobold.classify(3, ["Loading model: /tmp/junk.gguf", "Unknown Model, cannot load.",
                               "Could not load text model: /tmp/junk.gguf"])
    assert junk.code == "bad_model" and "download it again" in junk.message
    oom = kobold.classify(3, ["llama_new_context_with_model: failed to allocate compute buffers",
                              "Could not load text model: /tmp/tiny-a.gguf"])
    assert oom.code == "oom" and "failed to allocate compute buffers" in oom.message


def test_a_crash_without_a_telling_line_quotes_the_last_line():
    failure = classify("llama-server", -signal.SIGSEGV, ["I loading", "I all good", ""])
    assert failure.code == "crashed" and "SIGSEGV" in failure.message and "last line: I all good" in failure.message


def test_ignored_lines_are_warnings_only():
    assert classify("llama-server", 0, [rule.example for rule in IGNORED]).code == "crashed"


def test_the_readme_carries_the_rule_table_as_the_code_has_it():
    assert rules_table() in README.read_text(), "README's classifier table differs: paste rules_table()'s output"
