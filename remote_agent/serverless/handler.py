"""The job handler: an async generator that proxies one job to the engine over httpx.

Why async all the way: the SDK runs a sync handler's every step inside its event loop, so a sync
HTTP client serialises the worker's jobs — measured 2.88 s against 0.93 s for 3 concurrent jobs
(SERVERLESS.md §1.4). Here every wait is an await on httpx.AsyncClient, one client (and connection
pool) per worker loop, so MAX_CONCURRENCY jobs really overlap.

What a job yields (with `return_aggregate_stream` the SDK also collects every yield into the job's
output list, §1.1):
- seed 001 "stream": `{"text": piece}` per SSE event of the engine's /v1/completions stream;
  "normal": one `{"text": whole}`.
- OpenAI passthrough with `"stream": true`: the engine's SSE text, each chunk as httpx reads it off
  the socket (no batching: worker-vllm's batching is what made users' streams "laggy", §5 #9);
  without stream: the engine's JSON answer, once.
- a failure: `{"error": JobError.wire()}` (serverless/errors.py), never an exception (which would
  show the client a traceback, §1.4). An engine that dies mid-job closes its sockets, so httpx
  fails at once and the link names the cause; one that hangs is cut off after REQUEST_TIMEOUT.

A job the platform stops (cancel, execution timeout) is cancelled by the SDK (task.cancel(), §1.4).
When the CancelledError lands in the handler, it runs through `async with client.stream(...)`, which
closes the engine connection — llama-server then stops generating for it — and goes on up to the
SDK. But mostly it lands in the SDK's own await (posting the last chunk) while the handler sits at
a `yield`; nothing would close the handler then until the garbage collector finds it, and the
engine would go on generating into a full socket. So each job's work runs in an inner generator
that a done-callback on the job's task closes (`aclose()`) when the task ends first.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from remote_agent.serverless.errors import (
    ENGINE_ERROR,
    ENGINE_TIMEOUT,
    INTERNAL,
    JobError,
)
from remote_agent.serverless.jobs import EngineCall, parse_job_input
from remote_agent.serverless.link import EngineLink, EngineTarget
from remote_agent.sse_lines import asplit_lines

CONNECT_TIMEOUT_S = 5.0  # loopback: a connect that takes this long will not succeed
MAX_ENGINE_ERROR_BYTES = 4096  # of the engine's error body, quoted in the job's error
log = logging.getLogger("remote_agent.serverless")


class JobHandler:
    """Serves jobs through link's engine; pass `handler.handle` to runpod.serverless.start.

    request_timeout_s bounds every wait for the engine's next bytes (REQUEST_TIMEOUT); concurrency
    sizes the connection pool (one keep-alive connection per job running at once)."""

    def __init__(self, link: EngineLink, *, request_timeout_s: float, concurrency: int) -> None:
        self.link = link
        self.request_timeout_s = request_timeout_s
        self.concurrency = concurrency
        self._client: httpx.AsyncClient | None = None
        self._closing: set[asyncio.Task] = set()

    def client(self) -> httpx.AsyncClient:
        """The worker's one AsyncClient, made in the running loop on first use (the SDK's loop)."""
        if self._client is None:
            pool = self.concurrency + 2
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.request_timeout_s, connect=CONNECT_TIMEOUT_S),
                limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool))
        return self._client

    async def handle(self, job: dict) -> AsyncIterator[Any]:
        """The SDK handler: job {"id", "input"} → what the module docstring lists. Yields a JobError's
        wire form instead of raising; lets CancelledError (a stopped job) through, and closes the
        engine request when the job's task ends before this generator does."""
        work = self._job(job)
        task = asyncio.current_task()

        def close_work(_task: asyncio.Future) -> None:
            closing = asyncio.get_running_loop().create_task(work.aclose())
            self._closing.add(closing)  # a task nobody holds may be collected before it ran
            closing.add_done_callback(self._closing.discard)

        if task is not None:
            task.add_done_callback(close_work)
        try:
            async for item in work:
                yield item
        finally:
            if task is not None:
                task.remove_done_callback(close_work)

    async def _job(self, job: dict) -> AsyncIterator[Any]:
        try:
            call = parse_job_input(job.get("input"))
            async for item in self._serve(call):
                yield item
        except JobError as exc:
            log.warning("job %s failed: %s: %s", job.get("id"), exc.kind, exc.message)
            yield {"error": exc.wire()}
        except Exception as exc:  # a bug here: its traceback goes to the worker's log, not the client
            log.exception("job %s failed inside the worker", job.get("id"))
            yield {"error": JobError(INTERNAL, f"the worker failed: {type(exc).__name__}",
                                     "see the worker's log (podtui endpoints logs)").wire()}

    async def _serve(self, call: EngineCall) -> AsyncIterator[Any]:
        target = await self.link.target()
        try:
            async for item in self._exchange(target, call):
                yield item
            return
        except httpx.ConnectError:  # refused: nothing was sent, so sending again is safe
            target = await self.link.recover(target)
        except httpx.TimeoutException as exc:
            raise _timeout(exc, self.request_timeout_s, target) from None
        except httpx.TransportError:
            raise await self.link.failure(target) from None
        try:
            async for item in self._exchange(target, call):
                yield item
        except httpx.TimeoutException as exc:
            raise _timeout(exc, self.request_timeout_s, target) from None
        except httpx.TransportError:
            raise await self.link.failure(target) from None

    async def _exchange(self, target: EngineTarget, call: EngineCall) -> AsyncIterator[Any]:
        client = self.client()
        url = target.base_url + call.path
        if not call.stream:
            response = await client.request(call.method, url, json=call.body, headers=target.headers())
            if response.status_code >= 400:
                raise engine_error(response.status_code, response.content, target)
            data = _json(response.content, target)
            yield {"text": completion_text(data, target)} if call.seed else data
            return
        async with client.stream(call.method, url, json=call.body, headers=target.headers()) as response:
            if response.status_code >= 400:
                raise engine_error(response.status_code, await response.aread(), target)
            if call.seed:
                async for piece in seed_pieces(asplit_lines(response.aiter_text()), target):
                    yield {"text": piece}
            else:
                async for chunk in response.aiter_text():
                    if chunk:
                        yield chunk


async def seed_pieces(lines: AsyncIterator[str], target: EngineTarget) -> AsyncIterator[str]:
    """The text of each `data: {…}` event of a /v1/completions SSE stream (choices[0].text), skipping
    empty pieces; ends at `data: [DONE]` or the end of the stream."""
    async for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        piece = completion_text(_json(payload.encode(), target), target)
        if piece:
            yield piece


def completion_text(data: Any, target: EngineTarget) -> str:
    """choices[0].text of a /v1/completions answer (or one of its stream events); JobError(engine_error)
    for any other shape."""
    try:
        text = data["choices"][0]["text"]
    except (KeyError, IndexError, TypeError):
        raise JobError(ENGINE_ERROR, f"{target.engine} answered /v1/completions without choices[0].text",
                       "a bug in the engine or this worker; the worker's log has the details",
                       engine=target.engine) from None
    return text if isinstance(text, str) else ""


def engine_error(status: int, body: bytes, target: EngineTarget) -> JobError:
    """The JobError for an HTTP error answer: its status, and the engine's own error (parsed JSON,
    else the start of its text) under "engine_error"."""
    text = body[:MAX_ENGINE_ERROR_BYTES].decode("utf-8", "replace")
    try:
        detail: Any = json.loads(text)
    except ValueError:
        detail = text
    message = detail.get("error", detail) if isinstance(detail, dict) else detail
    if isinstance(message, dict):
        message = message.get("message") or json.dumps(message)
    return JobError(ENGINE_ERROR, f"{target.engine} answered HTTP {status}: {message}",
                    "fix the request (the engine's own error is in engine_error)" if status < 500 else
                    "read the worker's log (podtui endpoints logs)",
                    engine=target.engine, status=status, engine_error=detail)


def _json(body: bytes, target: EngineTarget) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise JobError(ENGINE_ERROR, f"{target.engine} answered with something that is not JSON: "
                       f"{body[:200].decode('utf-8', 'replace')!r}", engine=target.engine) from None


def _timeout(exc: httpx.TimeoutException, timeout_s: float, target: EngineTarget) -> JobError:
    phase = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for its next bytes"
    return JobError(ENGINE_TIMEOUT, f"{target.engine} did not answer within {timeout_s:g} s ({phase})",
                    "raise REQUEST_TIMEOUT for long generations, or read the worker's log for a hung engine",
                    engine=target.engine)
