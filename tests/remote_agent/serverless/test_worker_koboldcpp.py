"""The real runpod SDK worker loop in front of the real koboldcpp 1.76: its OpenAI routes and the seed
shape, with its --password key (which koboldcpp checks as a bearer token on its text endpoints)."""

from __future__ import annotations

import json

import pytest

from tests.remote_agent.serverless.conftest import ENGINE_KEY, job_error, sse_content, sse_events
from tests.testbed.koboldcpp import KoboldcppServer
from tests.testbed.sdk_worker import start_sdk_worker

pytestmark = pytest.mark.timeout(120)
GREEDY = {"temperature": 0, "top_k": 1}


@pytest.fixture(scope="module")
def engine(koboldcpp_bin, tiny_model, tmp_path_factory):
    server = KoboldcppServer(koboldcpp_bin, tiny_model, extra_args=("--password", ENGINE_KEY, "--multiuser", "2"),
                             log_path=tmp_path_factory.mktemp("koboldcpp") / "koboldcpp.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker(platform, engine, tmp_path_factory):
    sdk = start_sdk_worker(platform.worker_env("wk"), engine.port, engine="koboldcpp", api_key=ENGINE_KEY,
                           concurrency=2, log_path=tmp_path_factory.mktemp("worker") / "worker.log")
    sdk.wait_ready(platform)
    yield sdk
    assert sdk.stop() == 0, sdk.output()
    assert ENGINE_KEY not in sdk.output()


def test_seed_normal_and_stream_tell_the_same_text(runtime, platform, worker):
    prompt = {"prompt": "The weather today is", "max_tokens": 12, **GREEDY}
    normal = runtime.runsync({**prompt, "answerType": "normal"})
    assert normal["status"] == "COMPLETED", normal
    [whole] = normal["output"]
    assert set(whole) == {"text"} and whole["text"]
    stream = runtime.runsync({**prompt, "answerType": "stream"})
    assert stream["status"] == "COMPLETED", stream
    pieces = platform.job(stream["id"])["stream"]
    # koboldcpp's stream starts 0.35 s late and sends what it generated since its last 20 ms tick:
    # the tiny model's 12 tokens arrive as one piece (a longer generation streams, below)
    assert pieces and all(set(p) == {"text"} for p in pieces)
    assert "".join(p["text"] for p in pieces) == whole["text"]


def test_a_long_completion_streams_in_many_pieces(runtime, platform, worker):
    body = {"model": "any", "prompt": "Once", "max_tokens": 1500, "ban_eos_token": True, **GREEDY}
    response, text = runtime.openai_stream("completions", body)
    assert response.status_code == 200
    job = platform.jobs[-1]
    assert len(job["stream"]) >= 3 and "".join(job["stream"]) == text
    assert len(sse_content(text)) > 1000


def test_openai_chat_streamed_and_not(runtime, worker):
    body = {"model": "any", "max_tokens": 8, "messages": [{"role": "user", "content": "Hello"}], **GREEDY}
    plain = runtime.openai("chat/completions", body)
    assert plain.status_code == 200, plain.text
    assert plain.json()["choices"][0]["message"]["content"]
    response, text = runtime.openai_stream("chat/completions", body)
    assert response.status_code == 200 and sse_events(text)[-1] == "[DONE]"
    assert sse_content(text) == plain.json()["choices"][0]["message"]["content"]


def test_openai_completions(runtime, worker):
    answer = runtime.openai("completions", {"model": "any", "prompt": "Hello", "max_tokens": 6, **GREEDY})
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["text"]


@pytest.mark.parametrize("job_input", [{"openai_route": "/v1/models"},
                                       {"openai_route": "/v1/models", "openai_input": {}}],
                         ids=["no openai_input", "empty openai_input"])
def test_models_without_a_body_is_a_get(runtime, worker, job_input):
    job = runtime.runsync(job_input)
    assert job["status"] == "COMPLETED", job
    assert job["output"][0]["data"][0]["id"].startswith("koboldcpp/")


def test_a_route_koboldcpp_lacks_is_an_engine_error_naming_koboldcpp(runtime, worker):
    job = runtime.runsync({"openai_route": "/v1/embeddings", "openai_input": {"input": "x"}})
    error = job_error(job)
    assert error["kind"] == "engine_error" and error["engine"] == "koboldcpp", error
    assert json.dumps(error).count(ENGINE_KEY) == 0
