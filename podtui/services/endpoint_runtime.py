"""What `podtui endpoints health | wake | test` do with an endpoint's runtime API (SERVERLESS.md §3).

- health: `/health` read as a state a person understands (§3.4, §6's missing warm/cold
  indicator): warm (a worker is idle or running), waking (one is initializing), unhealthy (one
  fails its health checks and none is ready), cold (none); jobs waiting with no warm worker get
  the IN_QUEUE diagnosis of podtui.services.endpoints.diagnose_queue (crash loop vs capacity vs
  cold start, §5 #2), fed with /health's worker counts.
- wake: the cheapest real job (§3.6: `/v1/models` through the worker's OpenAI passthrough, with a
  short ttl and execution timeout), polled to a terminal state; its `delayTime` is the cold start.
- test: a streamed chat completion through `/openai/v1` (§3.2), timed: time to first token and
  tokens per second, as a chat client would see them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from podtui.providers.base import ProviderError
from podtui.providers.runpod_api import parse_sse
from podtui.providers.runpod_endpoints import RESOURCE_ID, EndpointNotFound
from podtui.providers.runpod_runtime import (
    Health,
    JobStatus,
    JobWaitTimeout,
    RuntimeClient,
)
from podtui.services.endpoints import diagnose_queue, find_endpoint, open_endpoints
from remote_agent.sse_lines import split_lines

# §3.6: answered by the worker without generating; ttl and executionTimeout keep a forgotten one cheap.
WAKE_INPUT = {"openai_route": "/v1/models"}
WAKE_POLICY = {"ttl": 300000, "executionTimeout": 30000}
COLD_DELAY_S = 2.0   # a delayTime above this was a worker starting, not a job waiting for a fetch (§1.5: ~1 s)

WARM, WAKING, COLD, UNHEALTHY = "warm", "waking", "cold", "unhealthy"


@dataclass(frozen=True)
class EndpointState:
    """`state` is warm | waking | cold | unhealthy; `workers`/`jobs` are /health's counts;
    `diagnosis` (cause, advice) is set when jobs wait IN_QUEUE and no worker is warm."""

    state: str
    workers: dict[str, int]
    jobs: dict[str, int]
    diagnosis: tuple[str, str] | None = None

    def as_dict(self) -> dict:
        data = asdict(self)
        data["diagnosis"] = ({"cause": self.diagnosis[0], "advice": self.diagnosis[1]}
                             if self.diagnosis else None)
        return data


def open_endpoint(ref: str, *, on_wait: Callable[[str], None] | None = None,
                  warnings: list[str] | None = None) -> tuple[RuntimeClient, Health]:
    """A runtime client for the endpoint whose id or name is `ref`, and its /health (read to check
    the key and the id before anything is sent). A ref the runtime does not know is looked up by
    name in REST v2 (`podtui endpoints list`'s names). Raises EndpointNotFound when neither knows
    it, ApiKeyRejected, NoApiKey, RunpodUnavailable."""
    if RESOURCE_ID.fullmatch(ref or ""):
        client = RuntimeClient.from_environment(ref, on_wait=on_wait, warnings=warnings)
        try:
            return client, client.health()
        except EndpointNotFound as exc:
            client.close()
            missing = exc
    else:
        missing = EndpointNotFound(f"{ref!r} is not a Runpod endpoint id", "run `podtui endpoints list` to see the ids")
    try:
        rest = open_endpoints(on_wait=on_wait)
    except ProviderError:
        raise missing from None
    try:
        endpoint_id = find_endpoint(rest, ref).id   # its EndpointNotFound names ids and names alike
    except EndpointNotFound:
        raise
    except ProviderError as exc:   # REST unreachable: the runtime's own answer is the one to show
        raise missing from exc
    finally:
        rest.close()
    client = RuntimeClient.from_environment(endpoint_id, on_wait=on_wait)
    try:
        return client, client.health()
    except ProviderError:
        client.close()
        raise


def classify(health: Health, endpoint_id: str = "ENDPOINT") -> EndpointState:
    """The state of an endpoint from its /health (§3.4; `ready` is counted as warm, it appears
    in third-party captures). A worker that is idle or running makes it warm, even beside an
    unhealthy one; jobs in the queue without a warm worker get diagnose_queue's cause."""
    warm = health.worker("idle") + health.worker("running") + health.worker("ready")
    if warm:
        state = WARM
    elif health.worker("unhealthy"):
        state = UNHEALTHY
    elif health.worker("initializing"):
        state = WAKING
    else:
        state = COLD
    diagnosis = None
    if health.job("inQueue") and not warm:
        summary = {name: health.worker(name) for name in ("running", "idle", "initializing", "throttled", "unhealthy")}
        summary["total"] = sum(summary.values())
        found = diagnose_queue({"workers": [], "summary": summary}, endpoint_id=endpoint_id)
        diagnosis = (found.cause, found.advice)
    return EndpointState(state, dict(health.workers), dict(health.jobs), diagnosis)


def read_state(client: RuntimeClient) -> EndpointState:
    """classify(client.health()); ProviderError subclasses when /health cannot be read."""
    return classify(client.health(), client.endpoint_id)


@dataclass(frozen=True)
class WakeResult:
    """A finished wake job. Seconds throughout: `delay_s` is Runpod's delayTime (queue wait
    including the cold start), `execution_s` the job's run, `total_s` what podtui waited;
    `cold` says a worker had to start (no warm worker before, or delayTime over COLD_DELAY_S)."""

    job_id: str
    state_before: str
    cold: bool
    delay_s: float | None
    execution_s: float | None
    total_s: float
    models: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def wake(client: RuntimeClient, *, timeout_s: float, poll_s: float = 1.0,
         on_progress: Callable[[str, dict], None] | None = None) -> WakeResult:
    """Send the wake job and wait (at most timeout_s seconds) until a worker has answered it.

    on_progress(kind, data) is called with kind "state" (the endpoint before), "queued" (job id),
    "waiting" (every poll while IN_QUEUE: elapsed_s, and the endpoint state with its diagnosis
    every ~10 s), "running". Raises JobProblem when the job ends FAILED, CANCELLED, TIMED_OUT or
    COMPLETED without output (§5 #5), JobWaitTimeout when timeout_s passes (the wake job is then
    cancelled: a worker that was already starting may still come up), ProviderError subclasses
    for API failures."""
    report = on_progress or (lambda kind, data: None)
    started = time.monotonic()
    try:
        before = read_state(client)
        report("state", before.as_dict())
    except ProviderError:
        before = None   # /health is a nicety here: the job itself tells whether a worker answers
    job = client.run(WAKE_INPUT, WAKE_POLICY)
    report("queued", {"job_id": job.id, "status": job.status})
    last_diag = [started]

    def on_status(status: JobStatus) -> None:
        elapsed = round(time.monotonic() - started, 1)
        if status.status == "IN_QUEUE":
            data: dict = {"job_id": status.id, "elapsed_s": elapsed}
            if time.monotonic() - last_diag[0] >= 10:
                last_diag[0] = time.monotonic()
                try:
                    data["endpoint"] = read_state(client).as_dict()
                except ProviderError:
                    pass
            report("waiting", data)
        elif status.status == "IN_PROGRESS":
            report("running", {"job_id": status.id, "elapsed_s": elapsed})

    try:
        final = client.wait(job.id, timeout_s=max(0.0, timeout_s - (time.monotonic() - started)),
                            poll_s=poll_s, on_status=on_status)
    except JobWaitTimeout:
        try:
            client.cancel(job.id)
        except ProviderError:
            pass
        raise
    output = client.result(final)
    delay_s = final.delay_ms / 1000 if final.delay_ms is not None else None
    cold = (before is not None and before.state != WARM) or (delay_s is not None and delay_s > COLD_DELAY_S)
    return WakeResult(final.id, before.state if before else "unknown", cold, delay_s,
                      final.execution_ms / 1000 if final.execution_ms is not None else None,
                      round(time.monotonic() - started, 3), _model_ids(output))


def _model_ids(output: object) -> list[str]:
    """Model ids in a /v1/models answer; the SDK may deliver it wrapped in a list (§2.5:
    return_aggregate_stream makes the output a list of the yields)."""
    if isinstance(output, list) and len(output) == 1:
        output = output[0]
    if isinstance(output, str):
        try:
            output = json.loads(output)
        except ValueError:
            return []
    data = output.get("data") if isinstance(output, dict) else None
    return [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")] if isinstance(data, list) else []


@dataclass(frozen=True)
class ChatTest:
    """A streamed chat completion, timed in seconds from sending the request: `models_s` for the
    /v1/models call that named the model (None when --model was given), `first_token_s`, `total_s`;
    `tokens` counts content chunks (llama-server and koboldcpp send one token per chunk)."""

    model: str
    models_s: float | None
    first_token_s: float | None
    total_s: float
    tokens: int
    tokens_per_s: float | None
    text: str
    finish_reason: str | None

    def as_dict(self) -> dict:
        return asdict(self)


def _http_problem(response, what: str) -> ProviderError:
    response.read()
    detail = ""
    try:
        payload = response.json()
        error = payload.get("error") if isinstance(payload, dict) else None
        detail = (error.get("message") if isinstance(error, dict) else error) or payload.get("detail") or ""
    except ValueError:
        detail = response.text[:200]
    return ProviderError(f"the endpoint answered HTTP {response.status_code} to {what}"
                         + (f": {str(detail)[:300]}" if detail else ""),
                         "read the worker's log: `podtui endpoints logs ID`; a 401 means the Runpod key")


def list_models(client: RuntimeClient, *, timeout_s: float) -> list[str]:
    """Model ids from `GET /openai/v1/models` (a worker must answer it: this wakes a cold endpoint)."""
    response = client.openai_request("GET", "/models", read_timeout_s=timeout_s)
    try:
        if response.status_code >= 400:
            raise _http_problem(response, "GET /openai/v1/models")
        response.read()
        try:
            return _model_ids(response.json())
        except ValueError:
            raise ProviderError("the endpoint's /openai/v1/models answer is not JSON",
                                "check that the worker runs podtui's image (MODE_TO_RUN=serverless)") from None
    finally:
        response.close()


def chat_test(client: RuntimeClient, *, prompt: str, model: str | None = None, max_tokens: int = 64,
              timeout_s: float = 600.0, on_token: Callable[[str], None] | None = None) -> ChatTest:
    """Stream one chat completion through `/openai/v1/chat/completions` and time it.

    Without `model`, the endpoint's first model from /v1/models is used (that call is timed as
    models_s). on_token(text) gets each content piece as it arrives. Raises ProviderError for an
    HTTP error, a stream that ends without `data: [DONE]`, or a stream with no choices at all."""
    models_s = None
    if not model:
        began = time.monotonic()
        ids = list_models(client, timeout_s=timeout_s)
        models_s = round(time.monotonic() - began, 4)
        model = ids[0] if ids else "default"
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "stream": True}
    began = time.monotonic()
    response = client.openai_request("POST", "/chat/completions", content=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
                                     read_timeout_s=timeout_s)
    first = last = None
    pieces: list[str] = []
    finish = None
    done = False
    try:
        if response.status_code >= 400:
            raise _http_problem(response, "POST /openai/v1/chat/completions")
        for event in parse_sse(split_lines(response.iter_text())):
            if event.data.strip() == "[DONE]":
                done = True
                break
            try:
                chunk = json.loads(event.data)
            except ValueError:
                continue
            if isinstance(chunk, dict) and chunk.get("error"):
                raise ProviderError(f"the worker sent an error in the stream: {str(chunk['error'])[:300]}",
                                    "read the worker's log: `podtui endpoints logs ID`")
            for choice in (chunk.get("choices") or []) if isinstance(chunk, dict) else []:
                text = ((choice.get("delta") or {}).get("content")) if isinstance(choice, dict) else None
                finish = choice.get("finish_reason") or finish
                if text:
                    now = time.monotonic()
                    first = first if first is not None else now
                    last = now
                    pieces.append(text)
                    if on_token is not None:
                        on_token(text)
    finally:
        response.close()
    total = time.monotonic() - began
    if not done:
        raise ProviderError("the stream ended without `data: [DONE]`: the worker stopped mid-answer",
                            "read the worker's log: `podtui endpoints logs ID`; long answers can meet the "
                            "endpoint's execution timeout")
    rate = (len(pieces) - 1) / (last - first) if first is not None and last is not None and last > first else None
    return ChatTest(model, models_s, round(first - began, 4) if first is not None else None, round(total, 4),
                    len(pieces), round(rate, 2) if rate else None, "".join(pieces), finish)

