"""The koboldcpp adapter. No koboldcpp binary can be installed on this machine, so its command line
is checked as built, and its health check and supervision run against the stand-in engine process
(tests/testbed/standin_engine.py), which serves koboldcpp's `/api/v1/model`."""

from __future__ import annotations

import json

import pytest

from remote_agent.engine.adapters import adapter_for
from remote_agent.engine.adapters.base import EngineConfig
from remote_agent.engine_key import EngineKey

pytestmark = pytest.mark.timeout(60)


def test_the_command_line_carries_seed_000s_flags_and_args_last(tmp_path):
    binary = tmp_path / "koboldcpp"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    config = EngineConfig(engine="koboldcpp", model="org/repo:Q4_K_M", model_path="/models/m.gguf", port=5002,
                          ctx=8192, args=("--threads", "8"), max_tokens=512)
    command = adapter_for("koboldcpp").command(config, tmp_path)
    assert command[0] == str(binary)
    joined = " ".join(command)
    for flags in ("--model /models/m.gguf", "--contextsize 8192", "--port 5002", "--gpulayers 999",
                  "--usecublas mmq", "--flashattention", "--ignoremissing", "--skiplauncher", "--host 127.0.0.1",
                  "--defaultgenamt 512"):   # MAX_TOKENS: the reply length when a request names none
        assert flags in joined
    assert command[-2:] == ["--threads", "8"]


def test_koboldcpp_out_of_memory_and_bad_model_lines_are_classified():
    adapter = adapter_for("koboldcpp")
    oom = adapter.classify(-6, ["Loading model...", "ggml_backend_cuda_buffer_type_alloc_buffer: allocating "
                                "8192.00 MiB on device 0: cudaMalloc failed: out of memory",
                                "CUDA error: out of memory", "Aborted"])
    assert oom.code == "oom" and "SIGABRT" in oom.message
    bad = adapter.classify(1, ["Cannot find model file: /models/x.gguf"])
    assert bad.code == "bad_model"
    assert adapter.classify(1, ["Traceback (most recent call last):", "KeyError: 'x'"]).code == "crashed"


def test_the_daemon_runs_and_health_checks_a_koboldcpp_stand_in(make_daemon, standin_bin, tiny_model, tmp_path):
    argv_file = tmp_path / "argv.json"
    daemon = make_daemon(standin_bin, args=["--no-autostart"],
                         env={"ENGINE": "koboldcpp", "STANDIN_ARGV_FILE": str(argv_file), "ARGS": "--threads 2"})
    status = daemon.client().result("engine.start", {"model": str(tiny_model), "ctx": 4096})
    assert status["state"] == "ready" and status["engine"] == "koboldcpp"
    argv = json.loads(argv_file.read_text())
    assert argv[argv.index("--contextsize") + 1] == "4096" and argv[-2:] == ["--threads", "2"]
    assert "--usecublas" in argv and "--skiplauncher" in argv


def test_the_agents_key_is_a_password_flag_masked_in_the_logged_line_and_never_doubled(tmp_path):
    binary = tmp_path / "koboldcpp"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    adapter = adapter_for("koboldcpp")
    agent_key = EngineKey("agents-key", "generated")
    config = EngineConfig(engine="koboldcpp", model="m", model_path="/models/m.gguf", port=5002,
                          args=("--threads", "8"))
    command = adapter.command(config, tmp_path, adapter.launch_key(config.args, agent_key))
    assert command[command.index("--password") + 1] == "agents-key" and command[-2:] == ["--threads", "8"]
    assert "agents-key" not in adapter.loggable(command) and "--password '***'" in adapter.loggable(command)
    assert adapter.key_environment("agents-key") == {}  # koboldcpp reads no variable for it

    own = EngineConfig(engine="koboldcpp", model="m", model_path="/models/m.gguf", port=5002,
                       args=("--password=users-own",))
    command = adapter.command(own, tmp_path, adapter.launch_key(own.args, agent_key))
    assert command.count("--password") == 0 and command[-1] == "--password=users-own"
    assert adapter.engine_key(own.args, agent_key) == EngineKey("users-own", "ARGS")
    assert "users-own" not in adapter.loggable(command)
