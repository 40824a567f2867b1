"""HTTP transport for Runpod REST v2: auth, retries, plain-word errors, Server-Sent Events.

Why our own thin client: runpod-python speaks only the GraphQL API (retiring) and builds its
queries with f-strings. Here every body is JSON that httpx encodes, so any env value round-trips.

The API key lives in an `ApiKey`, whose repr and str never show it; it is sent only in the
Authorization header and scrubbed from any error text a server might echo back.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from podtui.providers.base import PodNotFound, ProviderError
from remote_agent.sse_lines import split_lines

DEFAULT_API_URL = "https://api.runpod.io"  # the spec's `servers` entry
API_KEY_FIX = ("create a key in the Runpod console (Settings → API Keys) and export RUNPOD_API_KEY=…, "
               "or put it in podtui's config file under [runpod] api_key")


class ApiKeyRejected(ProviderError):
    pass


class RunpodUnavailable(ProviderError):
    """Network trouble, timeouts, rate limits or server errors that outlasted the retries."""


class MalformedResponse(ProviderError):
    pass


@dataclass(frozen=True)
class Subject:
    """What a call is about, for the words of its errors (404, 403, 409): the noun, the verb that
    lists such things, the access a key needs, and the error a 404 raises."""

    noun: str = "pod"
    listing: str = "podtui pods"
    access: str = "pods"
    not_found: type[ProviderError] = PodNotFound


PODS = Subject()


class ApiKey:
    """A Runpod API key that does not show itself in reprs, logs or tracebacks."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value.strip()
        self.source = source

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        return text.replace(self._value, "<api key>") if self._value else text

    def __repr__(self) -> str:
        return f"ApiKey(<hidden>, from {self.source})"

    __str__ = __repr__

    def __reduce__(self):  # no pickling the secret into some cache by accident
        raise TypeError("ApiKey cannot be pickled")


def check_api_url(url: str) -> str:
    """The base URL without a trailing slash; plain http only to a loopback address (tests)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ProviderError(f"Runpod API URL {url!r} is not an http(s) URL", "use e.g. https://api.runpod.io")
    if parts.scheme == "http":
        try:
            loopback = ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = parts.hostname == "localhost"
        if not loopback:
            raise ProviderError(f"Runpod API URL {url!r} is plain http: the API key would cross the "
                                "network unencrypted", "use an https:// URL")
    return url.rstrip("/")


@dataclass
class RetryPolicy:
    max_retries: int = 4            # retries after the first try, for 429, 5xx and (idempotent) timeouts
    backoff_s: float = 1.0          # first wait; doubles each retry
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 60.0  # a longer Retry-After is honoured up to this much per wait

    def backoff(self, attempt: int) -> float:
        return min(self.backoff_s * (2 ** (attempt - 1)), self.max_backoff_s)


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class SseEvent:
    data: str
    event_id: str = ""
    event: str = "message"


def parse_sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    """Events from an SSE line stream (text/event-stream framing; comments and retries ignored)."""
    data: list[str] = []
    event_id = ""
    event = "message"
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield SseEvent("\n".join(data), event_id, event)
            data, event = [], "message"
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
        elif name == "event":
            event = value
    if data:
        yield SseEvent("\n".join(data), event_id, event)


class RunpodApi:
    """One httpx client for one API key. Blocking; callers keep it off the UI thread."""

    def __init__(self, key: ApiKey, base_url: str = DEFAULT_API_URL, *, timeout_s: float = 30.0,
                 connect_timeout_s: float = 10.0, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.key = key
        self.base_url = check_api_url(base_url)
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._on_wait = on_wait
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key.reveal()}", "Accept": "application/json",
                     "User-Agent": "podtui"},
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            follow_redirects=False,  # a redirect would carry the Authorization header elsewhere
        )

    def __repr__(self) -> str:
        return f"RunpodApi({self.base_url!r}, key={self.key!r})"

    def close(self) -> None:
        self._client.close()

    # -- plain JSON calls ------------------------------------------------------------------

    def call(self, method: str, path: str, *, body: dict | None = None, params: dict | None = None,
             what: str = "", idempotent: bool = True, subject: Subject = PODS) -> object | None:
        """JSON result of one call (None for 204), after retries; ProviderError subclasses otherwise
        (a 404 raises subject.not_found; the fixes name subject.listing)."""
        response = self._send(method, path, body=body, params=params, what=what, idempotent=idempotent,
                              subject=subject)
        try:
            if response.status_code == 204 or not response.content:
                return None
            return self._decode(response, what)
        finally:
            response.close()

    def _decode(self, response: httpx.Response, what: str) -> object:
        try:
            return json.loads(response.content)
        except ValueError:
            raise MalformedResponse(
                f"Runpod sent a reply podtui cannot read while {what or 'talking to it'} "
                f"(HTTP {response.status_code}, not JSON)",
                "try again in a minute; if it persists, check https://uptime.runpod.io",
            ) from None

    # -- Server-Sent Events ----------------------------------------------------------------

    def stream_events(self, path: str, *, params: dict | None = None, headers: dict | None = None,
                      read_timeout_s: float, max_duration_s: float | None, what: str,
                      subject: Subject = PODS) -> Iterator[SseEvent]:
        """Events until the server ends the stream, nothing arrives for read_timeout_s, or
        max_duration_s passes. Iterating is blocking; closing the generator closes the stream."""
        response = self._send("GET", path, params=params, headers=headers, what=what, idempotent=True,
                              stream=True, read_timeout_s=read_timeout_s, subject=subject)
        started = time.monotonic()
        try:
            for event in parse_sse(split_lines(response.iter_text())):
                yield event
                if max_duration_s is not None and time.monotonic() - started > max_duration_s:
                    return
        except httpx.ReadTimeout:
            return  # quiet: the backfill is over and nothing new arrived
        except httpx.TransportError as exc:
            raise RunpodUnavailable(f"the log stream from Runpod broke while {what}: {type(exc).__name__}",
                                    f"try again; the {subject.noun} itself is not affected") from None
        finally:
            response.close()

    # -- the one place requests are sent ---------------------------------------------------

    def _send(self, method: str, path: str, *, body: dict | None = None, params: dict | None = None,
              headers: dict | None = None, what: str, idempotent: bool, stream: bool = False,
              read_timeout_s: float | None = None, subject: Subject = PODS) -> httpx.Response:
        what = what or f"{method} {path}"
        timeout = None
        if read_timeout_s is not None:
            timeout = httpx.Timeout(self.timeout_s, read=read_timeout_s)
        attempt = 0
        while True:
            attempt += 1
            can_retry = attempt <= self.retry.max_retries
            request = self._client.build_request(method, path, json=body, params=params, headers=headers,
                                                 **({"timeout": timeout} if timeout else {}))
            try:
                response = self._client.send(request, stream=stream)
            except httpx.TimeoutException:
                if idempotent and can_retry:
                    self._wait(self.retry.backoff(attempt), f"Runpod did not answer; retry {attempt}")
                    continue
                maybe = "" if idempotent else "; the request may still have taken effect"
                raise RunpodUnavailable(f"Runpod did not answer within {self.timeout_s:g} s while {what}{maybe}",
                                        "check your network and try again; `podtui pods` shows what exists") from None
            except httpx.TransportError as exc:
                if idempotent and can_retry:
                    self._wait(self.retry.backoff(attempt), f"cannot reach Runpod; retry {attempt}")
                    continue
                raise RunpodUnavailable(f"cannot reach Runpod at {self.base_url} while {what}: "
                                        f"{type(exc).__name__}", "check your network connection") from None
            status = response.status_code
            if status < 400:
                return response
            if stream:
                response.read()
            response.close()
            if status == 429 and can_retry:
                hinted = _retry_after_seconds(response.headers.get("Retry-After"))
                wait = min(hinted if hinted is not None else self.retry.backoff(attempt),
                           self.retry.max_retry_after_s)
                self._wait(wait, f"Runpod rate limit; waiting {wait:g} s (retry {attempt})")
                continue
            # A 5xx to a create may come after Runpod acted on it (a proxy timing out): retrying
            # could make a second pod or endpoint, so only idempotent calls are retried.
            if status >= 500 and can_retry and idempotent:
                self._wait(self.retry.backoff(attempt), f"Runpod answered HTTP {status}; retry {attempt}")
                continue
            error = self._error_for(response, what, attempt, subject)
            if status >= 500 and not idempotent:
                error = RunpodUnavailable(f"{error}; the request may still have taken effect",
                                          f"run `{subject.listing}` before trying again, so nothing is made twice")
            raise error

    def _wait(self, seconds: float, note: str) -> None:
        if self._on_wait is not None:
            self._on_wait(note)
        self._sleep(seconds)

    def _detail(self, response: httpx.Response) -> str:
        try:
            payload = json.loads(response.content)
        except ValueError:
            return ""
        if not isinstance(payload, dict):
            return ""
        parts = [str(payload.get("detail") or payload.get("title") or payload.get("error") or "")]
        errors = payload.get("errors")
        if isinstance(errors, list) and errors:
            parts.append("; ".join(str(e) for e in errors[:5]))
        return self.key.scrub(": ".join(p for p in parts if p))[:500]

    def _error_for(self, response: httpx.Response, what: str, attempts: int,
                   subject: Subject = PODS) -> ProviderError:
        status = response.status_code
        detail = self._detail(response)
        said = f" (Runpod says: {detail})" if detail else ""
        if status == 401:
            return ApiKeyRejected(f"Runpod API key rejected (from {self.key.source})", API_KEY_FIX)
        if status == 403:
            return ProviderError(f"the Runpod API key may not do this: {what}{said}",
                                 f"give the key read/write access to {subject.access} in the Runpod console")
        if status == 404:
            return subject.not_found(f"Runpod has no such resource while {what}{said}",
                                     f"run `{subject.listing}` to see the {subject.noun}s and their ids")
        if status == 402:
            return ProviderError(f"Runpod refused for lack of balance while {what}{said}",
                                 "add credit to the Runpod account")
        if status == 409:
            return ProviderError(f"Runpod says that is not possible in the {subject.noun}'s current state{said}",
                                 f"run `{subject.listing}` to see its status")
        if status == 429:
            return RunpodUnavailable(f"Runpod kept rate-limiting podtui ({attempts} tries) while {what}",
                                     "wait a minute and try again")
        if status >= 500:
            return RunpodUnavailable(f"Runpod had a server error (HTTP {status}) {attempts} times while {what}{said}",
                                     "try again later; https://uptime.runpod.io shows incidents")
        return ProviderError(f"Runpod refused the request (HTTP {status}) while {what}{said}",
                             "check the values given (GPU id, volume size, image)")
