"""The koboldcpp adapter's command line for a koboldcpp that does not describe itself and for a
newer one (a double of 1.102's argument parser), and its supervision against the stand-in engine
process (tests/testbed/standin_engine.py). The real koboldcpp 1.76: test_koboldcpp_real.py."""

from __future__ import annotations

import json

import pytest

from remote_agent.engine.adapters import adapter_for
from remote_agent.engine.adapters.base import EngineConfig, EngineFailure
from remote_agent.engine_key import EngineKey
from tests.testbed.koboldcpp import newer_koboldcpp_double

pytestmark = pytest.mark.timeout(60)


def silent_binary(directory):
    """A `koboldcpp` that answers nothing: the adapter cannot learn its flags and assumes seed 000's."""
    binary = directory / "koboldcpp"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return binary


def test_the_command_line_carries_seed_000s_flags_and_args_last(tmp_path):
    binary = silent_binary(tmp_path)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    config = EngineConfig(engine="koboldcpp", model="org/repo:Q4_K_M", model_path=str(model), port=5002,
                          ctx=8192, args=("--threads", "8"), max_tokens=512)
    command = adapter_for("koboldcpp").command(config, tmp_path)
    assert command[0] == str(binary)
    joined = " ".join(command)
    for flags in (f"--model {model}", "--contextsize 8192", "--port 5002", "--gpulayers 999",
                  "--usecublas mmq", "--flashattention", "--ignoremissing", "--skiplauncher", "--host 127.0.0.1"):
        assert flags in joined
    assert "--defaultgenamt" not in joined  # a koboldcpp that did not say it has it (1.76 has not) never gets it
    assert command[-2:] == ["--threads", "8"]


def test_a_newer_koboldcpp_gets_max_tokens_as_defaultgenamt(tmp_path):
    newer_koboldcpp_double(tmp_path)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    config = EngineConfig(engine="koboldcpp", model="m", model_path=str(model), port=5002, ctx=8192, max_tokens=512)
    adapter = adapter_for("koboldcpp")
    caps = adapter.caps(tmp_path)
    assert caps.version == "1.102" and (caps.ctx_min, caps.ctx_max) == (256, 262144) and caps.has("--useswa")
    assert "--defaultgenamt 512" in " ".join(adapter.command(config, tmp_path))


def test_a_missing_model_file_is_refused_before_koboldcpp_crashes_on_it(tmp_path):
    silent_binary(tmp_path)
    config = EngineConfig(engine="koboldcpp", model="m", model_path=str(tmp_path / "gone.gguf"), port=5002)
    with pytest.raises(EngineFailure) as caught:
        adapter_for("koboldcpp").command(config, tmp_path)
    assert caught.value.code == "bad_model" and "gone.gguf" in caught.value.message


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
    silent_binary(tmp_path)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    adapter = adapter_for("koboldcpp")
    agent_key = EngineKey("agents-key", "generated")
    config = EngineConfig(engine="koboldcpp", model="m", model_path=str(model), port=5002,
                          args=("--threads", "8"))
    command = adapter.command(config, tmp_path, adapter.launch_key(config.args, agent_key))
    assert "--password=agents-key" in command and command[-2:] == ["--threads", "8"]
    assert "agents-key" not in adapter.loggable(command) and "--password=***" in adapter.loggable(command)
    # A generated key can begin with "-": as one argument argparse never takes it for a flag.
    dash = adapter.command(config, tmp_path, "-starts-with-a-dash")
    assert "--password=-starts-with-a-dash" in dash
    assert adapter.key_environment("agents-key") == {}  # koboldcpp reads no variable for it

    own = EngineConfig(engine="koboldcpp", model="m", model_path=str(model), port=5002,
                       args=("--password=users-own",))
    command = adapter.command(own, tmp_path, adapter.launch_key(own.args, agent_key))
    assert sum(a.startswith("--password") for a in command) == 1 and command[-1] == "--password=users-own"
    assert adapter.engine_key(own.args, agent_key) == EngineKey("users-own", "ARGS")
    assert "users-own" not in adapter.loggable(command)
