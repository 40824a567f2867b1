"""The daemon side of the fit without launches: what the estimate assumes is what the engine runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from remote_agent.engine.adapters import adapter_for
from remote_agent.engine.adapters.base import EngineConfig
from remote_agent.engine.ctx import FitRequest, choose_ctx
from remote_agent.fit.agent_fit import AgentFitter, FitSettings, FitTarget, run_config
from remote_agent.fit.estimate import EstimateError
from remote_agent.server.settings import SettingsError, add_daemon_arguments, settings_from

MiB = 1 << 20


def test_run_config_reads_the_engine_flags_and_the_request_wins():
    target = FitTarget(Path("m.gguf"), "llama-server", ("-ctk", "q8_0", "--cache-type-v=q4_0", "-fa", "on",
                                                        "-ub", "256"), parallel=2)
    cfg = run_config(target)
    assert (cfg.cache_type_k, cfg.cache_type_v, cfg.n_ubatch, cfg.parallel, cfg.flash_attn) == \
        ("q8_0", "q4_0", 256, 2, True)
    assert run_config(target, cache_type="f16").cache_type_v == "f16"
    with pytest.raises(EstimateError):
        run_config(FitTarget(Path("m.gguf"), "llama-server", ("-ctk", "q3")))


def test_fit_flags_pin_the_estimated_config_after_args_and_turn_llama_servers_own_fit_off(llama_bin):
    cfg = run_config(FitTarget(Path("m.gguf"), "llama-server"))
    adapter = adapter_for("llama-server")
    config = EngineConfig("llama-server", "m", "/m.gguf", 5002, ctx=4096, args=("-t", "2"), gpu_layers=999,
                          fit_args=tuple(adapter.fit_flags(cfg)))
    cmd = adapter.command(config, llama_bin)
    tail = cmd[cmd.index("-t"):]
    assert tail[:4] == ["-t", "2", "--fit", "off"] and tail[4:] == cfg.engine_args()
    assert cmd[cmd.index("--n-gpu-layers") + 1] == "999" and cmd[cmd.index("--ctx-size") + 1] == "4096"
    assert EngineConfig.from_dict(config.to_dict()) == config  # fit_args survive the state file
    assert adapter_for("koboldcpp").fit_flags(cfg) == []


def test_ctx_auto_with_ctx_as_a_number_is_capped_by_it():
    assert choose_ctx("auto", "50000") == FitRequest(ctx_cap=50000)
    assert choose_ctx(None, "auto") == FitRequest(ctx_cap=None)
    assert choose_ctx(None, "8192") == 8192 and choose_ctx(2048, "auto") == 2048
    assert choose_ctx("auto", None, fresh=True).fresh


def test_budget_sources_in_order():
    assert AgentFitter(FitSettings(None, None, memory_budget=2 << 30)).budget().bytes == 2 << 30
    assert AgentFitter(FitSettings(None, None, address_space_limit=900 * MiB)).budget().source == "address-space"
    assert AgentFitter(FitSettings(None, None, address_space_limit=900 * MiB)).budget(600 * MiB).bytes == 600 * MiB


def test_daemon_flags_for_the_budget_and_the_stand_in():
    parser = argparse.ArgumentParser()
    add_daemon_arguments(parser)
    s = settings_from(parser.parse_args(["--memory-budget", "20GiB", "--engine-overhead", "66MiB+52",
                                         "--engine-stack-limit", "1048576"]), env={})
    assert (s.memory_budget, s.engine_overhead, s.engine_stack_limit) == (20 << 30, (66 * MiB, 52.0), 1 << 20)
    s = settings_from(parser.parse_args([]), env={"REMOTE_AGENT_MEMORY_BUDGET": "512M",
                                                  "REMOTE_AGENT_ENGINE_OVERHEAD": "-1000+3.5"})
    assert (s.memory_budget, s.engine_overhead) == (512 * MiB, (-1000, 3.5))
    with pytest.raises(SettingsError, match="--memory-budget"):
        settings_from(parser.parse_args(["--memory-budget", "lots"]), env={})
