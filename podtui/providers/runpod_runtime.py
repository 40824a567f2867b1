"""HTTP client for a Runpod Serverless endpoint's runtime API: jobs, health and the OpenAI route.

The runtime is another host and another service than REST v2 (SERVERLESS.md §3.1): jobs live
under `https://api.runpod.ai/v2/{endpointId}/…` (`/run`, `/status/{job}`, `/stream/{job}`,
`/cancel/{job}`, `/health`, `/openai/v1/…`), management under `https://api.runpod.io/v2/…`. So
this client has its own base URL: `PODTUI_RUNPOD_RUNTIME_URL`, else the public one (the same
rule as the OpenAI base URL podtui.providers.runpod_endpoints prints); the endpoint id is
appended to it. The API key is found as
for pods (podtui.providers.runpod.find_api_key) and sent as `Authorization: Bearer KEY` (§3.1:
the SDK and worker-vllm send Bearer, as OpenAI clients do); it is scrubbed from every error text.

Rules taken from what users met (§5, §7.6): a 429 is waited out (Retry-After, else a doubling
backoff), CANCELLED is a terminal state (the SDK's own client polls a cancelled job forever),
COMPLETED without `output` is an error that points at the worker logs (runpod-python#309: the
worker's result POST failed), and after a `/stream` ends `/status` is always read, because a
generator handler's error reaches only `/status` (runpod-python#397).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx

from podtui.config import Config, load_config
from podtui.providers.base import ProviderError
from podtui.providers.runpod import find_api_key
from podtui.providers.runpod_api import (API_KEY_FIX, ApiKey, ApiKeyRejected, MalformedResponse, RetryPolicy,
                                         RunpodUnavailable, _retry_after_seconds, check_api_url)
from podtui.providers.runpod_endpoints import DEFAULT_RUNTIME_URL, EndpointNotFound, path_id, runtime_url

JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})   # §3.2 job states
LOGS_FIX = "read the worker's log: `podtui endpoints logs {endpoint}`"


class JobProblem(ProviderError):
    """A job ended without a usable result. `status` is the JobStatus it ended with."""

    def __init__(self, title: str, fix: str, status: "JobStatus | None" = None) -> None:
        super().__init__(title, fix)
        self.status = status


class RuntimeUnreachable(RunpodUnavailable):
    """No connection to the runtime could be made: nothing was sent, so sending again is safe."""


class JobWaitTimeout(ProviderError):
    """A job was not terminal before the caller's deadline. `status` is the last one read."""

    def __init__(self, title: str, fix: str, status: "JobStatus") -> None:
        super().__init__(title, fix)
        self.status = status


_MISSING = object()


@dataclass(frozen=True)
class JobStatus:
    """One `/run`, `/status` or `/cancel` answer (§3.2). Times are milliseconds as Runpod sends
    them (`delayTime` includes the cold start); `output` is only meaningful when `has_output`."""

    id: str
    status: str
    delay_ms: float | None = None
    execution_ms: float | None = None
    output: object = None
    has_output: bool = False
    error: object = None
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, data: object, what: str) -> "JobStatus":
        """Raises MalformedResponse unless `data` is an object with a string `id` and `status`."""
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("status"), str):
            raise MalformedResponse(f"Runpod sent a job podtui cannot read while {what} (no id or status)",
                                    "try again; if it persists the runtime API may have changed")
        output = data.get("output", _MISSING)
        return cls(id=data["id"], status=data["status"], delay_ms=_number(data.get("delayTime")),
                   execution_ms=_number(data.get("executionTime")), output=None if output is _MISSING else output,
                   has_output=output is not _MISSING and output is not None, error=data.get("error"), raw=data)


@dataclass(frozen=True)
class Health:
    """`GET /health` (§3.4): job and worker counts. Every key is optional (documented:
    jobs.{completed,failed,inProgress,inQueue,retried}, workers.{idle,running}; seen elsewhere:
    workers.{initializing,ready,throttled,unhealthy}); a missing one reads as 0."""

    jobs: dict[str, int]
    workers: dict[str, int]

    def worker(self, name: str) -> int:
        return self.workers.get(name, 0)

    def job(self, name: str) -> int:
        return self.jobs.get(name, 0)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _counts(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class RuntimeClient:
    """One endpoint's runtime API over one httpx client. Blocking and thread-safe (httpx.Client
    is), so a proxy's request threads may share it."""

    def __init__(self, key: ApiKey, endpoint_id: str, base_url: str = DEFAULT_RUNTIME_URL, *,
                 timeout_s: float = 30.0, connect_timeout_s: float = 10.0, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.key = key
        self.endpoint_id = path_id(endpoint_id)
        self.base_url = f"{check_api_url(base_url)}/{self.endpoint_id}"
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._on_wait = on_wait
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key.reveal()}", "User-Agent": "podtui"},
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            follow_redirects=False,   # a redirect would carry the Authorization header elsewhere
            limits=httpx.Limits(max_keepalive_connections=32, keepalive_expiry=60.0),
        )

    @classmethod
    def from_environment(cls, endpoint_id: str, config: Config | None = None, *,
                         on_wait: Callable[[str], None] | None = None,
                         warnings: list[str] | None = None) -> "RuntimeClient":
        """A client for `endpoint_id` from the environment and podtui's config (the key, timeouts).
        `PODTUI_RUNPOD_TIMEOUT_S` and `PODTUI_RUNPOD_BACKOFF_S` are honoured as for pods.
        Raises NoApiKey without a key, ProviderError for a bad id or URL."""
        from podtui.providers.runpod import NoApiKey

        config = config if config is not None else load_config()
        if warnings is not None:
            warnings.extend(config.warnings)
        key = find_api_key(config, warnings=warnings)
        if key is None:
            raise NoApiKey("no Runpod API key is configured", API_KEY_FIX)
        url = runtime_url()
        timeout = float(os.environ.get("PODTUI_RUNPOD_TIMEOUT_S") or config.get("runpod", "timeout_s") or 30)
        retry = None
        if os.environ.get("PODTUI_RUNPOD_BACKOFF_S"):   # tests shorten the waits
            retry = RetryPolicy(backoff_s=float(os.environ["PODTUI_RUNPOD_BACKOFF_S"]), max_retry_after_s=5.0)
        return cls(key, endpoint_id, url, timeout_s=timeout, retry=retry, on_wait=on_wait)

    def __repr__(self) -> str:
        return f"RuntimeClient({self.base_url!r}, key={self.key!r})"

    def close(self) -> None:
        self._client.close()

    # -- jobs (§3.2) ------------------------------------------------------------------------

    def run(self, job_input: dict, policy: dict | None = None) -> JobStatus:
        """`POST /run`: queue a job; returns its JobStatus (normally IN_QUEUE). A 429 is waited
        out and retried (nothing was queued); other failures raise ProviderError subclasses."""
        body: dict = {"input": job_input}
        if policy:
            body["policy"] = policy
        return JobStatus.from_json(self._json("POST", "/run", body=body, what="queuing a job"), "queuing a job")

    def status(self, job_id: str) -> JobStatus:
        """`GET /status/{job}`. A 404 means Runpod no longer keeps the job (its ttl passed, or
        results older than 30 min): raised as JobProblem."""
        what = f"reading job {job_id}"
        return JobStatus.from_json(self._json("GET", f"/status/{_job(job_id)}", what=what, job=job_id), what)

    def cancel(self, job_id: str) -> JobStatus:
        """`POST /cancel/{job}` → the job, normally CANCELLED (queued and running jobs alike)."""
        what = f"cancelling job {job_id}"
        return JobStatus.from_json(self._json("POST", f"/cancel/{_job(job_id)}", what=what, job=job_id), what)

    def health(self) -> Health:
        """`GET /health` (§3.4; read-only, it wakes nothing)."""
        data = self._json("GET", "/health", what="reading the endpoint's health")
        if not isinstance(data, dict):
            raise MalformedResponse("Runpod sent a health answer podtui cannot read", "try again in a minute")
        return Health(_counts(data.get("jobs")), _counts(data.get("workers")))

    def wait(self, job_id: str, *, timeout_s: float, poll_s: float = 1.0,
             on_status: Callable[[JobStatus], None] | None = None) -> JobStatus:
        """Poll `/status` until the job is terminal (COMPLETED, FAILED, CANCELLED, TIMED_OUT) and
        return that status, unchecked (see `result`). Raises JobWaitTimeout after timeout_s
        seconds with the last status; the job keeps running at Runpod."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status(job_id)
            if on_status is not None:
                on_status(status)
            if status.terminal:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                raise JobWaitTimeout(f"job {job_id} is still {status.status} after {timeout_s:g} s",
                                     "wait longer (--timeout), or see `podtui endpoints health "
                                     f"{self.endpoint_id}`", status)
            self._sleep(min(poll_s, left))

    def result(self, status: JobStatus) -> object:
        """The output of a terminal job; JobProblem for FAILED, CANCELLED, TIMED_OUT and for
        COMPLETED without output (§5 #5: the worker's result POST was lost)."""
        fix = LOGS_FIX.format(endpoint=self.endpoint_id)
        if status.status == "COMPLETED":
            if not status.has_output:
                raise JobProblem(f"job {status.id} is COMPLETED but Runpod holds no output for it: the worker's "
                                 "result never arrived (runpod-python#309)", fix, status)
            return status.output
        if status.status == "FAILED":
            raise JobProblem(f"job {status.id} FAILED: {self.key.scrub(_error_text(status.error))}", fix, status)
        if status.status == "CANCELLED":
            raise JobProblem(f"job {status.id} was CANCELLED", "send it again if it is still wanted", status)
        if status.status == "TIMED_OUT":
            raise JobProblem(f"job {status.id} TIMED_OUT (its execution timeout passed)",
                             "raise the endpoint's execution timeout, or ask for less work", status)
        raise ProviderError(f"job {status.id} is not finished ({status.status})", "wait for it")

    def stream(self, job_id: str, *, timeout_s: float, wait_ms: int = 1000) -> Iterator[object]:
        """Each chunk a job streams (`GET /stream/{job}?wait=ms`, which drains what has arrived
        since the last call), then — always — `/status`, whose result is checked with `result`
        so a generator's error, sent only there (§5 #6), is raised as JobProblem."""
        deadline = time.monotonic() + timeout_s
        path = f"/stream/{_job(job_id)}"
        while True:
            data = self._json("GET", path, params={"wait": wait_ms}, what=f"streaming job {job_id}", job=job_id)
            if not isinstance(data, dict):
                raise MalformedResponse("Runpod sent a stream answer podtui cannot read", "try again")
            for item in data.get("stream") or []:
                yield item.get("output") if isinstance(item, dict) else item
            if data.get("status") in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise JobWaitTimeout(f"job {job_id} still streaming after {timeout_s:g} s", "wait longer",
                                     JobStatus(job_id, str(data.get("status") or "IN_PROGRESS")))
        self.result(self.wait(job_id, timeout_s=max(5.0, deadline - time.monotonic())))

    # -- the OpenAI-compatible route (§2.1, §3.2) -------------------------------------------

    def openai_request(self, method: str, path: str, *, content: bytes | None = None,
                       headers: dict[str, str] | None = None, read_timeout_s: float | None = None) -> httpx.Response:
        """Send `method /openai/v1/{path}` and return the response with its body NOT read
        (stream it with iter_raw, then close it). `headers` must not carry Authorization: the
        Runpod key is added here. Raises RuntimeUnreachable when no connection could be made
        (nothing was sent), RunpodUnavailable when the exchange broke after that (the request
        may have been queued as a job)."""
        if not path.startswith("/"):
            path = "/" + path
        timeout = httpx.Timeout(self.timeout_s, read=read_timeout_s) if read_timeout_s else None
        request = self._client.build_request(method, f"/openai/v1{path}", content=content, headers=headers,
                                             **({"timeout": timeout} if timeout else {}))
        try:
            return self._client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise RuntimeUnreachable(f"cannot reach the endpoint's OpenAI route at {self.base_url}: "
                                     f"{type(exc).__name__}", "check your network connection") from None
        except httpx.TransportError as exc:
            raise RunpodUnavailable(f"the endpoint's OpenAI route broke off the exchange: {type(exc).__name__}",
                                    "try again; a request sent before the break may still run") from None

    # -- the one place JSON calls are sent ----------------------------------------------------

    def _json(self, method: str, path: str, *, body: dict | None = None, params: dict | None = None,
              what: str, job: str | None = None) -> object:
        attempt = 0
        while True:
            attempt += 1
            can_retry = attempt <= self.retry.max_retries
            try:
                response = self._client.request(method, path, json=body, params=params)
            except httpx.TransportError as exc:
                # /run is not retried on a lost answer: the job may have been queued already
                if can_retry and method == "GET":
                    self._wait(self.retry.backoff(attempt), f"cannot reach Runpod; retry {attempt}")
                    continue
                raise RunpodUnavailable(f"cannot reach the Runpod runtime at {self.base_url} while {what}: "
                                        f"{type(exc).__name__}", "check your network connection") from None
            status = response.status_code
            if status == 429 and can_retry:   # §3.2 rate limits: nothing was done, wait and retry
                hinted = _retry_after_seconds(response.headers.get("Retry-After"))
                wait = min(hinted if hinted is not None else self.retry.backoff(attempt), self.retry.max_retry_after_s)
                self._wait(wait, f"Runpod rate limit; waiting {wait:g} s (retry {attempt})")
                continue
            if status >= 500 and can_retry and method == "GET":
                self._wait(self.retry.backoff(attempt), f"Runpod answered HTTP {status}; retry {attempt}")
                continue
            if status >= 400:
                raise self._error_for(response, what, attempt, job)
            if status == 204 or not response.content:
                return None
            try:
                return json.loads(response.content)
            except ValueError:
                raise MalformedResponse(f"Runpod sent a reply podtui cannot read while {what} "
                                        f"(HTTP {status}, not JSON)", "try again in a minute") from None

    def _wait(self, seconds: float, note: str) -> None:
        if self._on_wait is not None:
            self._on_wait(note)
        self._sleep(seconds)

    def _error_for(self, response: httpx.Response, what: str, attempts: int, job: str | None) -> ProviderError:
        status = response.status_code
        detail = self.key.scrub(_detail(response))[:300]
        said = f" (Runpod says: {detail})" if detail else ""
        if status == 401:
            return ApiKeyRejected(f"Runpod API key rejected by the endpoint runtime (from {self.key.source})",
                                  API_KEY_FIX)
        if status == 403:
            return ProviderError(f"the Runpod API key may not use endpoint {self.endpoint_id}{said}",
                                 "give the key access to serverless endpoints in the Runpod console")
        if status == 404 and job is not None:
            return JobProblem(f"Runpod no longer has job {job}{said}: results are kept 30 minutes after "
                              "/run, and none after the job's ttl", "send the job again")
        if status == 404:
            return EndpointNotFound(f"Runpod has no serverless endpoint {self.endpoint_id}{said}",
                                    "run `podtui endpoints list` to see the ids")
        if status == 429:
            return RunpodUnavailable(f"Runpod kept rate-limiting podtui ({attempts} tries) while {what}",
                                     "wait a minute and try again")
        if status >= 500:
            return RunpodUnavailable(f"the Runpod runtime had a server error (HTTP {status}) while {what}{said}",
                                     "try again later; https://uptime.runpod.io shows incidents")
        return ProviderError(f"Runpod refused the request (HTTP {status}) while {what}{said}",
                             "check the endpoint id and the job input")


def _job(job_id: str) -> str:
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise MalformedResponse(f"Runpod sent a job id podtui will not use: {str(job_id)[:80]!r}",
                                "report this if it persists")
    return job_id


def _detail(response: httpx.Response) -> str:
    try:
        payload = json.loads(response.content)
    except ValueError:
        return response.text.strip()[:200] if response.headers.get("content-type", "").startswith("text/") else ""
    if isinstance(payload, dict):
        value = payload.get("error") or payload.get("detail") or payload.get("title") or payload.get("message") or ""
        return _error_text(value)
    return ""


def _error_text(error: object) -> str:
    """A job's `error` in one line: a string as it is (it may be a JSON string or a Python repr,
    §1.4), an object by its message."""
    if isinstance(error, dict):
        inner = error.get("error") if isinstance(error.get("error"), dict) else error
        return str(inner.get("message") or inner.get("error_message") or json.dumps(error))[:500]
    if isinstance(error, str):
        try:
            parsed = json.loads(error)
        except ValueError:
            return error[:500]
        return _error_text(parsed) if isinstance(parsed, dict) else error[:500]
    return "no error message" if error is None else str(error)[:500]
