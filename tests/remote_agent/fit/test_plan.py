"""The daemon's seam: a plan from settings alone, without launching."""

from __future__ import annotations

from remote_agent.fit.budget import BudgetError, explicit_budget
from remote_agent.fit.plan import choose_budget, plan_ctx

MiB = 1 << 20


def test_plan_uses_llama_fit_params_from_the_engine_bin_dir(llama_bin, fit_large_model, tmp_path):
    events = []
    result = plan_ctx(fit_large_model, bin_dir=llama_bin, ctx_cap=1 << 20, budget=explicit_budget(600 * MiB),
                      state_dir=tmp_path, on_progress=events.append)
    assert result.status == "estimated" and result.launches == 0
    assert result.need_bytes <= 600 * MiB and 0 < result.ctx < 1 << 20


def test_without_a_gpu_or_budget_the_error_says_what_to_pass(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        choose_budget()
    except BudgetError as e:
        assert "--memory-budget" in str(e)
    else:
        raise AssertionError("a budget appeared without nvidia-smi")
