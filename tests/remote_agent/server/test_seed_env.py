"""The seeds' engine environment reaches the real llama-server: PARALLEL (seed 004's slots),
CTX_SIZE (seed 004's name for CTX) and MAX_TOKENS (the reply length when a request names none)."""

from __future__ import annotations

import json
import urllib.request
from argparse import Namespace

import pytest

from remote_agent.engine.adapters.base import EngineConfig
from remote_agent.engine.adapters.llama_server import LlamaServerAdapter
from remote_agent.server.settings import DEFAULT_PORT, settings_from
from tests.testbed.llama import auth

pytestmark = pytest.mark.timeout(90)


def namespace(**overrides) -> Namespace:
    from remote_agent.cli import build_parser

    args = build_parser().parse_args(["daemon"])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_ctx_size_is_read_as_ctx_and_ctx_wins_when_both_are_set():
    assert settings_from(namespace(), {"CTX_SIZE": "4096"}).env_ctx == "4096"
    assert settings_from(namespace(), {"CTX_SIZE": "4096", "CTX": "8192"}).env_ctx == "8192"
    settings = settings_from(namespace(), {"MAX_TOKENS": "256", "PARALLEL": "16"})
    assert (settings.max_tokens, settings.parallel, settings.port) == (256, 16, DEFAULT_PORT)


def test_llama_server_gets_n_predict_from_max_tokens(tmp_path):
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    config = EngineConfig("llama-server", "m", "/m.gguf", 5002, ctx=2048, parallel=4, max_tokens=64)
    command = LlamaServerAdapter().command(config, tmp_path)
    assert command[command.index("--n-predict") + 1] == "64"
    assert command[command.index("--parallel") + 1] == "4"


def test_seed_004_environment_on_the_real_engine(make_daemon, llama_bin, tiny_model):
    daemon = make_daemon(llama_bin, env={"MODEL": str(tiny_model), "CTX_SIZE": "1024", "PARALLEL": "2",
                                         "MAX_TOKENS": "3"})
    status = daemon.wait_for_state({"ready"}, timeout=60)
    assert status["ctx"] == 1024
    base = f"http://127.0.0.1:{daemon.port}"
    key = auth(daemon.api_key())
    with urllib.request.urlopen(urllib.request.Request(f"{base}/props", headers=key), timeout=5) as reply:
        assert json.load(reply)["total_slots"] == 2
    body = json.dumps({"prompt": "Once upon a time", "temperature": 0, "ignore_eos": True}).encode()
    request = urllib.request.Request(f"{base}/v1/completions", data=body,
                                     headers={"Content-Type": "application/json", **key})
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert json.load(reply)["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("env, said", [
    ({"CTX": "abc"}, "CTX='abc' is neither a number of tokens nor 'auto'"),
    ({"CTX_SIZE": "12k"}, "CTX_SIZE='12k'"),
    ({"PORT": "70000"}, "PORT=70000 must be at most 65535"),
])
def test_a_bad_ctx_or_port_is_refused_by_name_not_ignored(env, said):
    from remote_agent.server.settings import SettingsError

    with pytest.raises(SettingsError, match=said.replace("(", r"\(")):
        settings_from(namespace(), env)
    assert settings_from(namespace(), {"CTX": "auto"}).env_ctx == "auto"
