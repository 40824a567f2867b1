"""A real koboldcpp 1.76 (the test bed's CPU build) started with seed 000's flags on the tiny model:
what it serves, and which flags and limits it really has (the adapter learns them from --help).
Skips when scripts/build-koboldcpp.sh has not run. Everything stays on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.request

import pytest

from tests.testbed.koboldcpp import KoboldcppServer, get_json, koboldcpp_help
from tests.testbed.llama import chat_completion
from tests.testbed.procs import run_with_address_space_limit

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def koboldcpp(koboldcpp_bin, tiny_model, tmp_path_factory):
    """One koboldcpp for the module: it is ready after about 1.3 s (1 s of it a sleep in koboldcpp.py)."""
    server = KoboldcppServer(koboldcpp_bin, tiny_model,
                             log_path=tmp_path_factory.mktemp("koboldcpp") / "koboldcpp.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def help_text(koboldcpp_bin) -> str:
    return koboldcpp_help(koboldcpp_bin)


def run_to_exit(command: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, start_new_session=True)


def run_koboldcpp(binary, *args: str) -> subprocess.CompletedProcess:
    """Run koboldcpp to its exit (argument errors end it before any model loads)."""
    return run_to_exit([str(binary), *args], timeout=30.0)


def perf_once_idle(base_url: str, timeout: float = 5.0) -> dict:
    """/api/extra/perf once it says idle: koboldcpp holds its model lock 50 ms past each reply."""
    deadline = time.monotonic() + timeout
    while True:
        perf = get_json(f"{base_url}/api/extra/perf")
        if perf["idle"] == 1 or time.monotonic() > deadline:
            return perf
        time.sleep(0.02)


def test_it_names_the_model_by_its_file_name(koboldcpp):
    assert get_json(f"{koboldcpp.base_url}/api/v1/model") == {"result": "koboldcpp/tiny-a"}


def test_a_chat_completion_answers_with_real_tokens(koboldcpp):
    answer = chat_completion(koboldcpp.base_url, "Hello", max_tokens=8, timeout=60)
    assert answer["model"] == "koboldcpp/tiny-a"
    message = answer["choices"][0]["message"]
    assert message["role"] == "assistant" and isinstance(message["content"], str)


def test_perf_says_idle_with_an_empty_queue_between_requests(koboldcpp):
    perf = perf_once_idle(koboldcpp.base_url)
    assert perf["idle"] == 1 and perf["queue"] == 0
    assert {"last_process", "last_eval", "last_token_count", "total_gens", "uptime", "idletime"} <= perf.keys()


def test_perf_says_busy_while_a_generation_holds_the_model(koboldcpp):
    # A long reply (the end-of-stream token banned) keeps the model busy long enough to be seen.
    body = json.dumps({"messages": [{"role": "user", "content": "Count"}], "max_tokens": 1500,
                       "ban_eos_token": True}).encode()
    request = urllib.request.Request(f"{koboldcpp.base_url}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    done = threading.Event()

    def generate():
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                r.read()
        finally:
            done.set()

    worker = threading.Thread(target=generate, daemon=True)
    worker.start()
    seen_busy = False
    while not done.is_set() and not seen_busy:
        seen_busy = get_json(f"{koboldcpp.base_url}/api/extra/perf")["idle"] == 0
        time.sleep(0.01)
    worker.join(120)
    assert seen_busy, "koboldcpp never reported idle 0 during a 1500-token generation"
    assert perf_once_idle(koboldcpp.base_url)["idle"] == 1


def test_help_names_1_76_and_its_flags(help_text):
    assert "KoboldCpp Server - Version 1.76" in help_text
    for flag in ("--contextsize", "--quantkv", "--flashattention", "--password", "--skiplauncher", "--usecublas"):
        assert flag in help_text
    # Added after 1.76: an adapter must not pass them to this version.
    for flag in ("--useswa", "--defaultgenamt", "--version"):
        assert flag not in help_text


def test_a_flag_1_76_lacks_ends_it_before_loading(koboldcpp_bin):
    out = run_koboldcpp(koboldcpp_bin, "--defaultgenamt", "512")   # argparse takes 512 as the model
    assert out.returncode == 2 and "error: unrecognized arguments: --defaultgenamt" in out.stdout


# argparse checks a value when it meets it, so `--help` after it answers "accepted" without a start.
@pytest.mark.parametrize("ctx, accepted", [("255", False), ("256", True), ("262144", True), ("262145", False)])
def test_contextsize_must_lie_in_256_to_262144(koboldcpp_bin, ctx, accepted):
    out = run_koboldcpp(koboldcpp_bin, "--contextsize", ctx, "--help")
    assert (out.returncode == 0) is accepted
    if not accepted:
        assert out.returncode == 2 and "argument --contextsize: must be within [256, 262144]" in out.stdout


def test_quantkv_takes_0_1_2_and_needs_flashattention(koboldcpp_bin):
    for level in ("0", "1", "2"):
        assert run_koboldcpp(koboldcpp_bin, "--quantkv", level, "--help").returncode == 0
    out = run_koboldcpp(koboldcpp_bin, "--quantkv", "3", "--help")
    assert out.returncode == 2 and "argument --quantkv: invalid choice: 3" in out.stdout
    # Checked once koboldcpp starts, before the model loads (it sleeps 3 s before exiting).
    out = run_koboldcpp(koboldcpp_bin, "--quantkv", "1", "--skiplauncher", "--model", "/nonexistent.gguf")
    assert out.returncode == 1 and "Error: Using --quantkv requires --flashattention" in out.stdout


def test_a_file_that_is_no_model_ends_it_with_exit_3(koboldcpp_bin, tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(os.urandom(100_000))
    out = run_to_exit(KoboldcppServer(koboldcpp_bin, junk).command())
    assert out.returncode == 3
    assert "Unknown Model, cannot load." in out.stdout and f"Could not load text model: {junk}" in out.stdout


def test_out_of_memory_while_loading_ends_it_with_exit_3_naming_the_allocation(koboldcpp_bin, tiny_model):
    # An address-space limit stands in for VRAM. One malloc arena: otherwise each of koboldcpp's 24 HTTP
    # threads reserves its own 64 MB arena and the server, not the model, runs out (at 1000 MB the tiny
    # model serves at 2048; at 262144 its 769 MiB compute buffer no longer fits).
    server = KoboldcppServer(koboldcpp_bin, tiny_model, ctx=262144)
    out = run_with_address_space_limit(server.command(), 1000 * 2**20, timeout=60,
                                       env={**os.environ, "MALLOC_ARENA_MAX": "1"}, stdin=subprocess.DEVNULL)
    assert out.returncode == 3
    assert "llama_new_context_with_model: failed to allocate compute buffers" in out.stdout
    assert f"Could not load text model: {tiny_model}" in out.stdout
