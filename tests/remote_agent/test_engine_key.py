"""remote_agent/engine_key.py: where the engine's key comes from, how it is kept, and who never gets it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from remote_agent import engine_key
from remote_agent.child_env import secret_values, without_secrets
from remote_agent.engine.adapters.llama_server import LlamaServerAdapter
from remote_agent.engine_key import EngineKey, EngineKeyError


def test_api_key_wins_over_llama_api_key_and_none_in_any_case_opts_out():
    assert engine_key.key_from_env({}) is None
    assert engine_key.key_from_env({"LLAMA_API_KEY": "llama"}) == EngineKey("llama", "LLAMA_API_KEY")
    assert engine_key.key_from_env({"API_KEY": " mine ", "LLAMA_API_KEY": "llama"}) == EngineKey("mine", "API_KEY")
    off = engine_key.key_from_env({"API_KEY": "None"})
    assert off == EngineKey(None, "API_KEY=none") and off.opted_out and not off.required
    assert "WITHOUT an API key (API_KEY=none)" in off.warning
    assert engine_key.key_from_env({"LLAMA_API_KEY": "none"}).opted_out
    with pytest.raises(EngineKeyError, match="LLAMA_API_KEY holds characters"):
        engine_key.key_from_env({"LLAMA_API_KEY": "a,b"})  # llama-server would take two keys


def test_the_key_never_shows_in_a_repr():
    assert "s3cret" not in repr(EngineKey("s3cret", "API_KEY"))


def test_a_generated_key_is_kept_0600_and_found_again(tmp_path):
    state = tmp_path / "state"
    first = engine_key.stored_key(state)
    path = state / "engine-api-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(state.stat().st_mode) == 0o700
    assert engine_key.stored_key(state) == first and len(first) >= 40
    assert engine_key.resolve(None, state) == EngineKey(first, "generated")
    assert os.listdir(state) == ["engine-api-key"]  # no temporary file left behind
    os.chmod(path, 0o644)
    assert engine_key.stored_key(state) == first and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_empty_key_file_is_replaced_and_a_users_key_writes_nothing(tmp_path):
    (tmp_path / "engine-api-key").write_text("\n")
    assert engine_key.stored_key(tmp_path) == (tmp_path / "engine-api-key").read_text().strip() != ""
    other = tmp_path / "other"
    assert engine_key.resolve(EngineKey("users", "API_KEY"), other) == EngineKey("users", "API_KEY")
    assert not other.exists()


def test_processes_racing_to_create_the_key_agree_on_one(tmp_path):
    code = "import sys; from remote_agent.engine_key import stored_key; print(stored_key(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "state")], stdout=subprocess.PIPE,
                              text=True) for _ in range(6)]
    keys = {proc.communicate(timeout=30)[0].strip() for proc in procs}
    assert len(keys) == 1 and keys == {(tmp_path / "state" / "engine-api-key").read_text().strip()}


def test_a_state_dir_that_cannot_be_written_still_gives_a_key(tmp_path):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    key = engine_key.resolve(None, blocked / "state")
    assert key.required and key.value and key.source == "generated"  # for this run: never keyless


def test_llama_server_reads_a_key_from_args_or_an_args_key_file(tmp_path):
    adapter = LlamaServerAdapter()
    assert adapter.args_key(["-t", "2"]) == (False, None)
    assert adapter.args_key(["--api-key", "k1,k2"]) == (True, "k1")
    assert adapter.args_key(["--api-key=k3"]) == (True, "k3")
    keys = tmp_path / "keys"
    keys.write_text("# comment\n\nfile-key\nsecond\n")
    assert adapter.args_key(["--api-key-file", str(keys)]) == (True, "file-key")
    unreadable = adapter.engine_key(["--api-key-file", str(tmp_path / "missing")], EngineKey("agent", "generated"))
    assert unreadable == EngineKey(None, "ARGS") and unreadable.required  # set, though the agent cannot read it
    assert adapter.launch_key(["--api-key", "x"], EngineKey("agent", "generated")) is None  # never doubled
    assert adapter.key_environment("agent") == {"LLAMA_API_KEY": "agent"}
    assert adapter.loggable(["llama-server", "--api-key", "x", "-t", "2"]) == "llama-server --api-key '***' -t 2"


def test_no_child_inherits_the_users_key_and_none_is_no_secret():
    env = {"API_KEY": "mine", "LLAMA_API_KEY": "llama", "HF_TOKEN": "hf", "PATH": "/bin"}
    assert without_secrets(env) == {"PATH": "/bin"}
    assert sorted(secret_values(env)) == ["hf", "llama", "mine"]
    assert secret_values({"API_KEY": "none"}) == []
