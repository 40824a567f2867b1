"""The serverless worker against the platform double: the real runpod SDK loop, real engines.

Each test module gets one PlatformDouble, one engine and one SDK worker (module scope: the engine
loads in about 1 s, the worker imports runpod in about 1.7 s). Every worker process runs with the
double's RUNPOD_* environment, the fitness checks skipped and a temporary HOME (sdk_worker.py), so
no traffic leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from remote_agent.serverless.errors import parse_job_error
from tests.testbed.runpod_platform import PlatformDouble

ENGINE_KEY = "engine-key-serverless-tests-5d1c"  # the engines' API key: the worker must send it


class Runtime:
    """Podtui's side of the double, spoken as any client would: the runtime API over HTTP."""

    def __init__(self, platform: PlatformDouble) -> None:
        self.platform = platform
        self.http = httpx.Client(base_url=platform.runtime_url, timeout=60,
                                 headers={"Authorization": f"Bearer {platform.api_key}"})

    def runsync(self, job_input: dict, wait_ms: int = 60000) -> dict:
        return self.http.post("/runsync", params={"wait": wait_ms}, json={"input": job_input}).json()

    def openai(self, path: str, body: dict | None = None) -> httpx.Response:
        if body is None:
            return self.http.get(f"/openai/v1/{path}")
        return self.http.post(f"/openai/v1/{path}", json=body)

    def openai_stream(self, path: str, body: dict) -> tuple[httpx.Response, str]:
        with self.http.stream("POST", f"/openai/v1/{path}", json={**body, "stream": True}) as response:
            return response, "".join(response.iter_text())

    def close(self) -> None:
        self.http.close()


def sse_events(text: str) -> list[str]:
    """The data of each `data: …` line of an SSE body, in order."""
    return [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]


def sse_content(text: str, field: str = "content") -> str:
    """The text an OpenAI SSE stream carries: choices[0].delta.content (chat) or choices[0].text."""
    out = []
    for data in sse_events(text):
        if data == "[DONE]":
            continue
        choice = json.loads(data)["choices"][0]
        out.append((choice.get("delta") or {}).get(field) or choice.get("text") or "")
    return "".join(out)


def job_error(job: dict) -> dict:
    """The worker's structured error of a FAILED job (it must parse)."""
    assert job["status"] == "FAILED", job
    parsed = parse_job_error(job["error"])
    assert parsed is not None, f"not the worker's JSON error form: {job['error']!r}"
    return parsed


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.02):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"not within {timeout_s}s: {what}")


def released_tokens(log_text: str) -> list[int]:
    """llama-server's `slot release: … stop processing: n_tokens = N` counts, in order."""
    return [int(n) for n in re.findall(r"stop processing: n_tokens = (\d+)", log_text)]


@pytest.fixture(scope="module")
def platform():
    with PlatformDouble() as double:
        yield double


@pytest.fixture(scope="module")
def runtime(platform):
    client = Runtime(platform)
    yield client
    client.close()
