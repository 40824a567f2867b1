"""The engine's API key, on the real llama-server (and koboldcpp's stand-in): any web page could
otherwise use a tunnel's 127.0.0.1:5002, so the agent runs every engine with a key unless the
user opts out, keeps it across swaps and restarts, and never lets it into a log or a command line."""

from __future__ import annotations

import json
import os
import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.testbed import cache
from tests.testbed.llama import auth, chat_completion

pytestmark = pytest.mark.timeout(120)


def refused(base: str, api_key: str | None = None) -> int:
    """The HTTP status of a chat completion the engine refuses (the test fails if it answers)."""
    with pytest.raises(urllib.error.HTTPError) as refusal:
        chat_completion(base, max_tokens=2, api_key=api_key)
    return refusal.value.code


def get_status(url: str, api_key: str | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=auth(api_key)), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def engine_logs(daemon) -> str:
    """Everything the agent kept: the engine's output and its own lines (logs.tail), and its stderr."""
    with daemon.client() as client:
        events, _ = client.call("logs.tail", {"n": 100_000, "source": "all"})
    return "\n".join(e["data"]["line"] for e in events) + "\n" + daemon.log_text()


def proc_text(pid: int, name: str) -> str:
    return Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def test_a_keyed_engine_refuses_requests_without_the_key_and_answers_with_it(make_daemon, llama_bin, tiny_model):
    daemon = make_daemon(llama_bin, env={"MODEL": str(tiny_model), "CTX": "1024"})
    status = daemon.wait_for_state({"ready"})  # the agent's own health check passed with the key on
    base = f"http://127.0.0.1:{daemon.port}"
    key = daemon.api_key()

    assert status["api_key_required"] is True and status["warnings"] == []
    assert "api_key" not in status and key not in json.dumps(status)  # status is printed by scripts
    assert refused(base) == 401
    assert refused(base, "not-the-key") == 401
    assert get_status(f"{base}/v1/models") == 401 and get_status(f"{base}/slots") == 401
    assert chat_completion(base, max_tokens=2, api_key=key)["choices"]
    key_file = daemon.root / "state" / "engine-api-key"
    assert key_file.read_text().strip() == key and len(key) >= 40
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_the_key_survives_a_swap_and_an_agent_restart(make_daemon, llama_bin, tiny_model, tiny_model_b, tmp_path):
    env = {"MODEL": str(tiny_model), "CTX": "1024"}
    daemon = make_daemon(llama_bin, env=env, root=tmp_path / "pod")
    daemon.wait_for_state({"ready"})
    key = daemon.api_key()
    with daemon.client() as client:
        assert client.result("engine.swap", {"model": str(tiny_model_b), "ctx": 512})["state"] == "ready"
    assert daemon.api_key() == key
    assert chat_completion(f"http://127.0.0.1:{daemon.port}", max_tokens=2, api_key=key)["choices"]
    daemon.stop()

    again = make_daemon(llama_bin, env=env, root=tmp_path / "pod", port=daemon.port)
    assert again.wait_for_state({"ready"})["model"] == str(tiny_model_b)
    assert again.api_key() == key
    assert chat_completion(f"http://127.0.0.1:{again.port}", max_tokens=2, api_key=key)["choices"]
    assert refused(f"http://127.0.0.1:{again.port}") == 401


def test_the_key_is_in_no_log_and_no_command_line_and_no_other_child_gets_it(make_daemon, llama_bin, tiny_model):
    daemon = make_daemon(llama_bin, env={"MODEL": str(tiny_model), "CTX": "1024", "HF_TOKEN": "hf_never_9d2"})
    status = daemon.wait_for_state({"ready"})
    key = daemon.api_key()
    chat_completion(f"http://127.0.0.1:{daemon.port}", max_tokens=2, api_key=key)
    refused(f"http://127.0.0.1:{daemon.port}", "wrong")  # llama-server logs the refusal

    logs = engine_logs(daemon)
    assert "started llama-server" in logs and "API key: generated" in logs
    assert key not in logs
    assert key not in proc_text(status["pid"], "cmdline")  # not in `ps` either
    environ = proc_text(status["pid"], "environ")
    assert f"LLAMA_API_KEY={key}" in environ  # how llama-server gets it: its environment, from the agent
    assert "hf_never_9d2" not in environ


def test_api_key_none_runs_the_engine_keyless_and_says_so(make_daemon, llama_bin, tiny_model):
    daemon = make_daemon(llama_bin, env={"MODEL": str(tiny_model), "CTX": "1024", "API_KEY": "none"})
    status = daemon.wait_for_state({"ready"})
    assert status["api_key_required"] is False
    assert len(status["warnings"]) == 1 and "WITHOUT an API key (API_KEY=none)" in status["warnings"][0]
    with daemon.client() as client:
        assert client.result("engine.api_key") == {"api_key": None, "source": "API_KEY=none", "required": False}
    assert chat_completion(f"http://127.0.0.1:{daemon.port}", max_tokens=2)["choices"]
    assert "WITHOUT an API key" in daemon.log_text()
    assert not (daemon.root / "state" / "engine-api-key").exists()


def test_the_users_key_from_api_key_is_used_and_kept_out_of_the_logs(make_daemon, llama_bin, tiny_model):
    user_key = "users-own-key-7f3c9a"
    daemon = make_daemon(llama_bin, env={"MODEL": str(tiny_model), "CTX": "1024", "API_KEY": user_key})
    status = daemon.wait_for_state({"ready"})
    with daemon.client() as client:
        assert client.result("engine.api_key") == {"api_key": user_key, "source": "API_KEY", "required": True}
    base = f"http://127.0.0.1:{daemon.port}"
    assert chat_completion(base, max_tokens=2, api_key=user_key)["choices"] and refused(base) == 401
    assert user_key not in engine_logs(daemon) and user_key not in proc_text(status["pid"], "cmdline")
    assert not (daemon.root / "state" / "engine-api-key").exists()  # nothing generated


def test_a_key_in_args_is_respected_and_not_doubled(make_daemon, llama_bin, tiny_model):
    args_key = "args-key-4b1e"
    daemon = make_daemon(llama_bin, env={"MODEL": str(tiny_model), "CTX": "1024", "ARGS": f"--api-key {args_key}"})
    status = daemon.wait_for_state({"ready"})
    with daemon.client() as client:
        assert client.result("engine.api_key") == {"api_key": args_key, "source": "ARGS", "required": True}
    base = f"http://127.0.0.1:{daemon.port}"
    assert chat_completion(base, max_tokens=2, api_key=args_key)["choices"]
    generated = (daemon.root / "state" / "engine-api-key").read_text().strip()
    assert refused(base, generated) == 401  # only the key ARGS gave: the agent's was not added
    assert "LLAMA_API_KEY" not in proc_text(status["pid"], "environ")
    logs = engine_logs(daemon)
    assert "--api-key '***'" in logs and args_key not in logs


def test_koboldcpp_gets_a_password_masked_in_every_line_and_probes_carry_it(make_daemon, standin_bin, tiny_model,
                                                                          tmp_path):
    seen = tmp_path / "seen.jsonl"
    daemon = make_daemon(standin_bin, args=["--no-autostart"],
                         env={"ENGINE": "koboldcpp", "STANDIN_ARGV_FILE": str(tmp_path / "argv.json"),
                              "STANDIN_SEEN_FILE": str(seen)})
    with daemon.client() as client:
        assert client.result("engine.start", {"model": str(tiny_model), "ctx": 2048})["state"] == "ready"
        key = client.result("engine.api_key")["api_key"]
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert f"--password={key}" in argv and sum(a.startswith("--password") for a in argv) == 1
    requests = [json.loads(line) for line in seen.read_text().splitlines()]
    assert requests and all(header == f"Bearer {key}" for _, header in requests)  # health included
    logs = engine_logs(daemon)
    assert "--password=***" in logs and "Namespace(" in logs  # its own print of its arguments, masked
    assert key not in logs


@pytest.fixture
def koboldcpp_dir() -> Path:
    """The folder of the test bed's CPU koboldcpp 1.76 (scripts/build-koboldcpp.sh); skip without it."""
    root = cache.cache_root() / "koboldcpp-1.76"
    if not ((root / "bin" / "koboldcpp").exists() and (root / "src" / "koboldcpp_default.so").exists()):
        pytest.skip("the test bed has no koboldcpp build (scripts/build-koboldcpp.sh)")
    return root / "bin"


def test_the_real_koboldcpp_refuses_a_chat_without_its_password(make_daemon, koboldcpp_dir, tiny_model):
    daemon = make_daemon(koboldcpp_dir, env={"ENGINE": "koboldcpp", "MODEL": str(tiny_model), "CTX": "1024"})
    status = daemon.wait_for_state({"ready"}, timeout=90)   # its health check sent the key
    key = daemon.api_key()
    base = f"http://127.0.0.1:{daemon.port}"
    assert refused(base) == 401 and refused(base, "not-the-key") == 401
    assert chat_completion(base, max_tokens=2, api_key=key)["choices"]
    logs = engine_logs(daemon)
    assert "password='***'" in logs   # koboldcpp's own print(args), masked by the agent
    assert key not in logs and status["api_key_required"]


def test_a_key_an_engine_cannot_take_is_refused_with_its_fix(tmp_path, llama_bin):
    from tests.testbed.agent_daemon import DaemonProcess

    root = tmp_path / "bad"
    root.mkdir()
    with pytest.raises(RuntimeError, match="API_KEY holds characters"):
        DaemonProcess(root, llama_bin, env={"API_KEY": "two keys,here"}).start()
    assert os.listdir(root) == ["daemon.log"]
