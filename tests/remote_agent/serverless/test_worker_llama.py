"""The real runpod SDK worker loop (unmodified) serving jobs from a real llama-server through the
worker's async handler, driven through the platform double's runtime API as a client would."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.remote_agent.serverless.conftest import (
    ENGINE_KEY, Runtime, job_error, released_tokens, sse_content, sse_events, wait_until)
from tests.testbed.llama import LlamaServer
from tests.testbed.runpod_platform import PlatformDouble
from tests.testbed.sdk_worker import sdk_worker_factory, start_sdk_worker

pytestmark = pytest.mark.timeout(120)
SLOTS = 4
GREEDY = {"temperature": 0, "seed": 1}


@pytest.fixture(scope="module")
def engine(llama_bin, tiny_model, tmp_path_factory):
    """llama-server with 4 slots of 4096 tokens each and an API key the worker must send."""
    server = LlamaServer(llama_bin, tiny_model, ctx=SLOTS * 4096,
                         extra_args=("--parallel", str(SLOTS), "--api-key", ENGINE_KEY),
                         log_path=tmp_path_factory.mktemp("llama") / "llama.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker(platform, engine, tmp_path_factory):
    sdk = start_sdk_worker(platform.worker_env("wl"), engine.port, api_key=ENGINE_KEY, concurrency=SLOTS,
                           log_path=tmp_path_factory.mktemp("worker") / "worker.log")
    sdk.wait_ready(platform)
    yield sdk
    assert sdk.stop() == 0, sdk.output()  # SIGTERM: the SDK drains and exits 0
    assert ENGINE_KEY not in sdk.output() and platform.worker_key not in sdk.output()


def direct_completion(engine, prompt: str, max_tokens: int) -> str:
    answer = httpx.post(f"{engine.base_url}/v1/completions", headers={"Authorization": f"Bearer {ENGINE_KEY}"},
                        json={"prompt": prompt, "max_tokens": max_tokens, **GREEDY}, timeout=30)
    return answer.json()["choices"][0]["text"]


def test_seed_normal_answers_one_text_the_engine_wrote(runtime, engine, worker):
    job = runtime.runsync({"prompt": "The capital of France is", "answerType": "normal", "max_tokens": 12, **GREEDY})
    assert job["status"] == "COMPLETED", job
    assert job["output"] == [{"text": direct_completion(engine, "The capital of France is", 12)}]
    assert job["output"][0]["text"]


def test_seed_stream_yields_pieces_as_the_engine_streams_them(runtime, platform, engine, worker):
    job = runtime.runsync({"prompt": "Once upon a time", "answerType": "stream", "max_tokens": 16, **GREEDY})
    assert job["status"] == "COMPLETED", job
    streamed = platform.job(job["id"])["stream"]  # what reached the platform through job-stream, in order
    assert len(streamed) >= 8 and all(set(piece) == {"text"} and piece["text"] for piece in streamed)
    assert job["output"] == streamed  # return_aggregate_stream: the output lists every piece
    assert "".join(p["text"] for p in streamed) == direct_completion(engine, "Once upon a time", 16)


def test_openai_chat_without_stream_answers_the_engines_json(runtime, worker):
    answer = runtime.openai("chat/completions", {"model": "any", "max_tokens": 8,
                                                 "messages": [{"role": "user", "content": "Hello"}]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["completion_tokens"] == 8


def test_openai_chat_stream_passes_the_engines_sse_through_chunk_by_chunk(runtime, platform, worker):
    response, text = runtime.openai_stream("chat/completions", {"model": "any", "max_tokens": 12,
                                                                "messages": [{"role": "user", "content": "Hi"}]})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"
    assert sse_content(text)
    job = platform.jobs[-1]
    assert job["input"]["openai_route"] == "/v1/chat/completions"
    # every job-stream output is raw SSE text, and there are many: no batching into one post
    assert len(job["stream"]) >= 10 and all(isinstance(c, str) and c.startswith("data: ") for c in job["stream"])
    assert "".join(job["stream"]) == text


def test_openai_completions_work_streamed_and_not(runtime, worker):
    plain = runtime.openai("completions", {"model": "any", "prompt": "Hello", "max_tokens": 6, **GREEDY})
    assert plain.status_code == 200 and plain.json()["object"] == "text_completion", plain.text
    body = {"model": "any", "prompt": "Hello", "max_tokens": 6, **GREEDY}
    response, text = runtime.openai_stream("completions", body)
    assert response.status_code == 200
    assert sse_content(text) == plain.json()["choices"][0]["text"]


@pytest.mark.parametrize("job_input", [{"openai_route": "/v1/models"},
                                       {"openai_route": "/v1/models", "openai_input": {}}],
                         ids=["no openai_input", "empty openai_input"])
def test_models_without_a_body_is_a_get(runtime, worker, job_input):
    job = runtime.runsync(job_input)
    assert job["status"] == "COMPLETED", job
    assert [m["object"] for m in job["output"][0]["data"]] == ["model"]


def test_models_through_the_openai_route(runtime, worker):
    answer = runtime.openai("models")
    assert answer.status_code == 200 and answer.json()["data"][0]["id"]


@pytest.mark.parametrize("job_input, kind, says", [
    ({"foo": 1}, "bad_input", "neither"),
    ({"prompt": "x", "answerType": "fast"}, "bad_input", "answerType"),
    ({"prompt": "x", "temprature": 0}, "bad_input", "temprature"),
    ({"openai_route": "/v1/../admin"}, "bad_input", "openai_route"),
    ({"openai_route": "/v1/chat/completions", "openai_input": {"messages": "not a list"}}, "engine_error", "HTTP"),
])
def test_bad_jobs_fail_with_a_structured_error_naming_the_problem(runtime, worker, job_input, kind, says):
    job = runtime.runsync(job_input)
    error = job_error(job)
    assert error["kind"] == kind and says in error["message"], error
    assert error.get("fix")
    assert "Traceback" not in job["error"]
    if kind == "engine_error":
        assert error["status"] >= 400 and error["engine"] == "llama-server" and error["engine_error"]


def test_a_failed_openai_job_is_an_http_error_carrying_the_workers_error(runtime, worker):
    answer = runtime.openai("chat/completions", {"messages": 3})
    assert answer.status_code == 500
    assert json.loads(answer.json()["error"])["kind"] == "engine_error"


def test_concurrent_jobs_really_overlap(platform, worker):
    """4 jobs at once on 4 slots: every job streams its first piece before any job has streamed its last."""
    body = {"prompt": "Count:", "max_tokens": 200, "stream": True, "ignore_eos": True}
    # Queued at one instant while the worker asks for 4, so one batch take gets them all. Taken in two
    # batches they would start about 1 s apart: SDK 1.12 counts a just-taken job twice (queued and in
    # progress) until it runs, so right after a job it asks for fewer and then sleeps 1 s when "full".
    wait_until(lambda: any(w["asking"] == SLOTS for w in platform.workers), 10, "a take for 4 jobs")
    ids = platform.submit_many([{"openai_route": "/v1/completions", "openai_input": body}] * SLOTS)
    jobs = [platform.wait_for(job_id, timeout_s=60) for job_id in ids]
    assert all(job["status"] == "COMPLETED" for job in jobs), jobs
    firsts = [job["stream_times"][0] for job in jobs]
    lasts = [job["stream_times"][-1] for job in jobs]
    assert max(firsts) < min(lasts), (firsts, lasts)
    assert len({job["workerId"] for job in jobs}) == 1  # one worker ran them all at once


def test_a_stopped_job_closes_its_engine_request_and_sends_no_result(runtime, platform, engine, worker):
    body = {"prompt": "Once", "max_tokens": 3500, "stream": True, "ignore_eos": True}
    job_id = platform.submit({"openai_route": "/v1/completions", "openai_input": body})
    wait_until(lambda: len(platform.job(job_id)["stream"]) >= 3, 20, "three streamed chunks")
    before = len(released_tokens(engine.log_path.read_text()))
    assert runtime.http.post(f"/cancel/{job_id}").json() == {"id": job_id, "status": "CANCELLED"}
    # the SDK gets the stop on its next job-stop poll (≤ ~1 s) and cancels the handler's task, whose
    # httpx stream closes the connection: llama-server cancels the task and releases the slot early
    released = wait_until(lambda: released_tokens(engine.log_path.read_text())[before:], 5, "the slot released")
    assert released[0] < 3000, released
    time.sleep(0.5)
    job = platform.job(job_id)
    assert job["status"] == "CANCELLED" and job["done_posts"] == 0, job
    # the worker goes on serving
    assert runtime.runsync({"prompt": "Hi", "max_tokens": 2})["status"] == "COMPLETED"


def test_a_cold_endpoint_starts_a_worker_for_a_job_and_stops_it_when_idle(engine, tmp_path):
    """The double's worker lifecycle with the real worker: initializing until its first take, the
    cold start in delayTime, and an idle worker stopped (SIGTERM; the SDK exits 0)."""
    started = []

    def factory(env):
        started.append(sdk_worker_factory(engine.port, api_key=ENGINE_KEY, log_dir=tmp_path)(env))
        return started[-1]

    with PlatformDouble(worker_factory=factory, cold_start_s=0.5, idle_timeout_s=1.0) as cold:
        client = Runtime(cold)
        assert cold.health()["workers"]["idle"] == cold.health()["workers"]["initializing"] == 0
        job_id = client.http.post("/run", json={"input": {"prompt": "Hi", "max_tokens": 2}}).json()["id"]
        wait_until(lambda: cold.health()["workers"]["initializing"] == 1, 2, "a worker initializing")
        cold.wait_for(job_id, timeout_s=30)
        status = client.http.get(f"/status/{job_id}").json()
        assert status["status"] == "COMPLETED" and status["delayTime"] >= 500, status
        assert cold.worker_starts == 1 and cold.health()["workers"]["idle"] == 1
        wait_until(lambda: not cold.workers, 10, "the idle worker stopped")
        assert started[0].exit_code == 0, started[0].output()
        client.close()


def test_the_runtime_face_run_stream_status_health_as_a_client_polls_them(runtime, platform, worker):
    """/run, then /stream drained until the job ends, /status and /health: what podtui's client uses."""
    idle = platform.counts
    time.sleep(1.0)
    polls = platform.counts.get("job-take-batch", 0) - idle.get("job-take-batch", 0)
    assert 1 <= polls <= 4, polls  # the empty queue holds each job-take ~0.5 s: no request storm
    job_id = runtime.http.post("/run", json={"input": {"prompt": "Hi", "answerType": "stream",
                                                       "max_tokens": 24, **GREEDY}}).json()["id"]
    drained, status = [], "IN_QUEUE"
    while status not in ("COMPLETED", "FAILED"):
        page = runtime.http.get(f"/stream/{job_id}", params={"wait": 500}).json()
        drained += [item["output"] for item in page["stream"]]
        status = page["status"]
    final = runtime.http.get(f"/status/{job_id}").json()
    assert final["status"] == "COMPLETED" and drained == final["output"], (drained, final)
    assert isinstance(final["delayTime"], int) and isinstance(final["executionTime"], int)
    health = runtime.http.get("/health").json()
    assert health["jobs"]["inQueue"] == 0 and health["workers"]["idle"] == 1, health
    assert runtime.http.get("/status/job-unknown").status_code == 404
    assert httpx.get(f"{platform.runtime_url}/health").status_code == 401
    assert httpx.get(f"{platform.runtime_url}/health", headers={"Authorization": platform.api_key}).status_code == 200
