"""The agent's small parts on their own: ring buffer fan-out, bounded line reader, state file."""

from __future__ import annotations

import asyncio
import json

import pytest

from remote_agent.engine.logbuf import LogBuffer
from remote_agent.server.linereader import OverlongLine, bounded_lines
from remote_agent.server.state import StateStore


async def test_a_full_follower_drops_lines_and_then_gets_a_marker_before_the_next_line():
    buffer = LogBuffer(capacity_per_source=100)
    buffer.bind_loop(asyncio.get_running_loop())
    follower = buffer.follow(frozenset({"engine"}), max_pending=3)
    for i in range(10):
        buffer.append("engine", f"line {i}")  # never blocks, whatever the follower does
    buffer.append("agent", "not followed")
    received = []
    async for entry in follower:
        received.append(entry["line"])
        if len(received) == 3:
            buffer.append("engine", "line 10")
        if len(received) == 5:
            break
    assert received == ["line 0", "line 1", "line 2", "[7 lines dropped]", "line 10"]
    buffer.unfollow(follower)
    assert buffer.follower_count == 0


def test_the_ring_keeps_only_the_newest_lines():
    buffer = LogBuffer(capacity_per_source=5)
    for i in range(12):
        buffer.append("engine", str(i))
    assert [e["line"] for e in buffer.tail(100, frozenset({"engine"}))] == ["7", "8", "9", "10", "11"]
    assert [e["line"] for e in buffer.tail(2, frozenset({"engine"}))] == ["10", "11"]


async def test_bounded_lines_discards_an_overlong_line_as_it_arrives():
    reader = asyncio.StreamReader()
    reader.feed_data(b"short\r\n" + b"x" * 100 + b"\nnext\n" + b"y" * 50)
    reader.feed_eof()
    got = [line async for line in bounded_lines(reader, limit=60)]
    assert got == [b"short", OverlongLine(100), b"next", b"y" * 50]


def test_state_is_written_atomically_and_a_corrupt_file_is_set_aside(tmp_path):
    store = StateStore(tmp_path / "state")
    assert store.load() is None
    store.save({"last_good": {"model": "a"}, "running": True})
    assert store.load()["last_good"] == {"model": "a"}
    assert [p.name for p in store.state_dir.iterdir()] == ["agent-state.json"]  # no temp files left
    store.path.write_text("{half a fi")
    assert store.load() is None
    assert store.path.with_suffix(".corrupt").exists()


@pytest.mark.parametrize("lines,kind", [
    (["E ggml_aligned_malloc: insufficient memory (attempted to allocate 1025.01 MB)",
      "E llama_server: exiting due to model loading error"], "oom"),
    (["E gguf_init_from_reader: invalid magic characters: '# po', expected 'GGUF'"], "bad_model"),
    (["E srv start: couldn't bind HTTP server socket, hostname: 127.0.0.1, port: 5002"], "port_in_use"),
    (["I all good", "Segmentation fault"], "crashed"),
])
def test_llama_server_failures_are_classified_from_its_log(lines, kind):
    from remote_agent.engine.adapters import adapter_for
    assert adapter_for("llama-server").classify(1, lines).code == kind


def test_status_gpus_is_null_without_nvidia_smi(monkeypatch, tmp_path):
    from remote_agent.server import status
    monkeypatch.setenv("PATH", str(tmp_path))
    assert status.query_gpus() is None
    fake = tmp_path / "nvidia-smi"  # a real executable printing nvidia-smi's CSV
    fake.write_text(f"#!/bin/sh\nenv > {tmp_path}/env.txt\n"
                    "echo '0, NVIDIA H100 80GB HBM3, 81559, 80000'\necho '1, NVIDIA H100 80GB HBM3, [N/A], [N/A]'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("HF_TOKEN", "hf_NOT_FOR_TOOLS")
    assert status.query_gpus() == [{"name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559,
                                    "memory_free_mib": 80000}]   # the GPU in a bad state is skipped
    assert json.dumps(status.query_gpus())
    assert "hf_NOT_FOR_TOOLS" not in (tmp_path / "env.txt").read_text()


def test_llama_fit_params_runs_without_the_pods_secrets(monkeypatch, tmp_path, tiny_model):
    from remote_agent.fit.estimate import FitParamsEstimator, FitParamsError

    fake = tmp_path / "llama-fit-params"
    fake.write_text(f"#!/bin/sh\nenv > {tmp_path}/env.txt\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("HF_TOKEN", "hf_NOT_FOR_TOOLS")
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_NOT_FOR_TOOLS")
    with pytest.raises(FitParamsError):
        FitParamsEstimator(fake, tiny_model).breakdown(512)
    seen = (tmp_path / "env.txt").read_text()
    assert "NOT_FOR_TOOLS" not in seen and "PATH=" in seen


@pytest.mark.parametrize("model, alias", [
    ("bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M", "bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M"),
    ("/workspace/models/tiny-a.gguf", "tiny-a.gguf"),
    ("hf.co/org/repo/model-Q4_K_M.gguf", "model-Q4_K_M.gguf"),
    ("org/repo:Q4_K_M,Q8_0", "org/repo:Q4_K_M_Q8_0"),  # llama-server splits --alias at commas
])
def test_llama_server_names_the_model_as_the_user_gave_it(model, alias, tmp_path):
    from remote_agent.engine.adapters import adapter_for
    from remote_agent.engine.adapters.base import EngineConfig
    from remote_agent.engine.adapters.llama_server import model_alias
    (tmp_path / "llama-server").write_text("#!/bin/sh\n")
    (tmp_path / "llama-server").chmod(0o755)
    config = EngineConfig(engine="llama-server", model=model, model_path="/models/x.gguf", port=5002)
    assert model_alias(config) == alias
    command = adapter_for("llama-server").command(config, tmp_path)
    assert command[command.index("--alias") + 1] == alias
    own = adapter_for("llama-server").command(EngineConfig(**{**config.__dict__, "args": ("-a", "mine")}), tmp_path)
    assert own.count("--alias") == 0 and own[-2:] == ["-a", "mine"]
