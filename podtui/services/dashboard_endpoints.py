"""The Runpod Serverless half of the TUI's services (issue 17): what the endpoints section of the
main screen lists and what its keys do, over the same calls as the `podtui endpoints` verbs.

- list: `podtui endpoints list`'s rows (REST v2: endpoints, workers views, pool prices) plus each
  endpoint's runtime `/health`, read as `podtui endpoints health` reads it (warm | waking | cold |
  unhealthy, with the IN_QUEUE diagnosis; SERVERLESS.md §3.4). When /health cannot be read the
  state comes from the workers view, by the same rule;
- wake and test: podtui.services.endpoint_runtime's wake (the `/v1/models` job, §3.6) and
  chat_test (a streamed chat completion through `/openai/v1`, §3.2);
- keep-alive: podtui.services.keep_warm.KeepWarm, the watch `podtui serve --keep-warm` runs,
  with no requests flowing: it keeps one worker warm for its idle limit from the moment it is
  switched on, then stops by itself; its cost is priced from the listing (REST v2 pool price);
- logs: podtui.services.endpoint_logs.log_lines, every active worker, followed;
- delete: REST v2 DELETE, which also deletes the bound template (§4.2).

Everything blocks (the TUI calls it from worker threads) and is thread-safe. Progress and
keep-alive events go to the TUI's activity log ("podtui.tui", shown by `L`). The Runpod key lives
in the API clients (podtui.providers.runpod_api.ApiKey) and never reaches a message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from podtui.display import format_price, format_uptime
from podtui.errors import PodtuiError
from podtui.providers.base import ProviderError
from podtui.providers.runpod import RunpodProvider
from podtui.providers.runpod_api import RetryPolicy
from podtui.providers.runpod_endpoints import RunpodEndpoints, runtime_url
from podtui.providers.runpod_runtime import Health, RuntimeClient
from podtui.services.endpoint_logs import log_lines
from podtui.services.endpoint_runtime import chat_test, classify, wake
from podtui.services.endpoints import EndpointStatus, list_endpoints
from podtui.services.follow import Emit, IterableFollower, LineFollower
from podtui.services.front import (ENDPOINT_TEST_PROMPT, WORKER_STATES, EndpointListing, EndpointRow,
                                   ProgressCallback)
from podtui.services.keep_warm import RUNPOD_DEFAULT_IDLE_S, EndpointCosts, KeepWarm, ping_interval

activity = logging.getLogger("podtui.tui")  # the TUI's activity log (L)

NO_KEY_TITLE = "Serverless endpoints need a Runpod API key"
NO_KEY_FIX = ("restart podtui and enter it when asked, or export RUNPOD_API_KEY (create one in the Runpod console, "
              "Settings → API Keys)")
NO_KEY_NOTE = f"{NO_KEY_TITLE}: {NO_KEY_FIX}"
KEEP_WARM_IDLE_S = 600.0          # as `podtui serve --idle-limit` (10m)
TEST_MAX_TOKENS = 32              # short: the test is billed as worker time
WAKE_LOG_EVERY_S = 5.0            # a wait in the queue is written to the activity log this often


def endpoint_board(providers: list) -> "EndpointBoard | None":
    """The board over the Runpod provider's API client (its key, URL, retries), or None when no
    Runpod provider is configured (no key)."""
    for provider in providers:
        if isinstance(provider, RunpodProvider):
            return EndpointBoard(RunpodEndpoints(provider.api, image=provider.image,
                                                 log_quiet_s=provider.log_quiet_s))
    return None


@dataclass
class _Warmth:
    """One endpoint's keep-alive: when it was switched on (time.monotonic()), and its watch."""

    name: str
    started: float
    idle_limit_s: float
    watch: KeepWarm | None = None
    ended: bool = False

    def stop(self, timeout_s: float = 2.0) -> None:
        self.ended = True
        if self.watch is not None:
            self.watch.stop(timeout_s)


class EndpointBoard:
    """The endpoint calls of the TUI's services over one REST v2 client (`rest`) and one runtime
    client per endpoint (base `runtime_base`, else PODTUI_RUNPOD_RUNTIME_URL or Runpod's). Times in
    seconds: `wake_timeout_s` for a worker to answer the wake job, `test_timeout_s` for the chat
    test (a cold start included), `keep_warm_idle_s` for keep-alive to stop by itself,
    `runtime_timeout_s` for one runtime call (/health, /run, /status), `log_rescan_s` between
    looks for new workers while their logs are followed."""

    def __init__(self, rest: RunpodEndpoints, *, runtime_base: str | None = None, wake_timeout_s: float = 600.0,
                 test_timeout_s: float = 600.0, keep_warm_idle_s: float = KEEP_WARM_IDLE_S,
                 keep_warm_poll_s: float = 5.0, runtime_timeout_s: float = 30.0, log_tail: int = 200,
                 log_rescan_s: float = 10.0) -> None:
        self.rest = rest
        self.runtime_base = runtime_base
        self.wake_timeout_s = wake_timeout_s
        self.test_timeout_s = test_timeout_s
        self.keep_warm_idle_s = keep_warm_idle_s
        self.keep_warm_poll_s = keep_warm_poll_s
        self.runtime_timeout_s = runtime_timeout_s
        self.log_tail = log_tail
        self.log_rescan_s = log_rescan_s
        self._lock = threading.Lock()
        self._clients: dict[str, RuntimeClient] = {}
        self._listed: dict[str, EndpointStatus] = {}
        self._warm: dict[str, _Warmth] = {}
        self._news: list[str] = []

    # ---- helpers -------------------------------------------------------------------------------
    def _runtime(self, endpoint_id: str) -> RuntimeClient:
        with self._lock:
            client = self._clients.get(endpoint_id)
            if client is None:
                client = RuntimeClient(self.rest.api.key, endpoint_id, self.runtime_base or runtime_url(),
                                       timeout_s=self.runtime_timeout_s,
                                       retry=RetryPolicy(max_retries=2, backoff_s=0.5, max_backoff_s=2.0,
                                                         max_retry_after_s=10.0))
                self._clients[endpoint_id] = client
            return client

    def _name(self, endpoint_id: str) -> str:
        with self._lock:
            status = self._listed.get(endpoint_id)
        return (status.endpoint.name if status else "") or endpoint_id

    def _tell(self, text: str, *, warning: bool = False) -> None:
        """Into the activity log, and once into the next listing's news (shown as a notification)."""
        (activity.warning if warning else activity.info)(text)
        with self._lock:
            self._news.append(text)

    # ---- list ----------------------------------------------------------------------------------
    def list(self) -> EndpointListing:
        """See TuiServices.list_endpoints. Never raises for Runpod's failures: they are problems."""
        with self._lock:
            news, self._news = self._news, []
        listing = EndpointListing(news=news)
        try:
            statuses = list_endpoints(self.rest)
        except PodtuiError as exc:
            listing.problems.append(f"endpoints: {exc.title}" + (f" ({exc.fix})" if exc.fix else ""))
            return listing
        with self._lock:
            self._listed = {status.endpoint.id: status for status in statuses}
        for status in statuses:
            listing.rows.append(self._row(status, listing.problems))
        return listing

    def _row(self, status: EndpointStatus, problems: list[str]) -> EndpointRow:
        endpoint, view = status.endpoint, status.workers
        try:
            health: Health | None = self._runtime(endpoint.id).health()
        except ProviderError as exc:
            health = None
            if view is None:
                problems.append(f"{endpoint.name or endpoint.id}: state unknown: {exc.title}")
        if view is not None:
            workers = {name: view.count(name) for name in WORKER_STATES}
        elif health is not None:
            workers = {name: health.worker(name) for name in WORKER_STATES}
        else:
            workers = {}
        if health is not None:
            state = classify(health, endpoint.id)
        elif view is not None:   # the same rule over the workers view: no queue is known then
            state = classify(Health({}, workers), endpoint.id)
        else:
            state = None
        if status.problem is not None:
            problems.append(f"{endpoint.name or endpoint.id}: workers unknown: {status.problem.title}")
        return EndpointRow(
            key=endpoint.id, name=endpoint.name, state=state.state if state else "unknown", workers=workers,
            queue=health.job("inQueue") if health is not None else None, pools=endpoint.pools,
            gpu_count=endpoint.gpu_count, price_per_worker_hr=status.price_per_worker_hr,
            workers_min=endpoint.workers_min, workers_max=endpoint.workers_max,
            idle_timeout_s=endpoint.idle_timeout_s, model=endpoint.env.get("MODEL", ""),
            keep_warm=self._keep_warm_text(endpoint.id),
            diagnosis=f"{state.diagnosis[0]}: {state.diagnosis[1]}" if state and state.diagnosis else "",
            warnings=tuple(status.warnings))

    def _keep_warm_text(self, endpoint_id: str) -> str:
        with self._lock:
            warmth = self._warm.get(endpoint_id)
        if warmth is None or warmth.ended:
            return ""
        left = max(0.0, warmth.idle_limit_s - (time.monotonic() - warmth.started))
        return f"on · {format_uptime(left)} left"

    # ---- wake and test -------------------------------------------------------------------------
    def wake(self, endpoint_id: str, progress: ProgressCallback) -> str:
        """See TuiServices.wake_endpoint."""
        name = self._name(endpoint_id)
        waits_logged: list[float] = []   # when a wait in the queue was last written to the activity log

        def on_progress(kind: str, data: dict) -> None:
            text = _wake_words(kind, data)
            progress("wake", None, text)
            if kind == "waiting" and not data.get("endpoint") and waits_logged \
                    and time.monotonic() - waits_logged[-1] < WAKE_LOG_EVERY_S:
                return   # the screen shows every poll; the log one line every few seconds
            if kind == "waiting":
                waits_logged.append(time.monotonic())
            activity.info("wake %s: %s", name, text)

        activity.info("wake %s: asking for a worker", name)
        result = wake(self._runtime(endpoint_id), timeout_s=self.wake_timeout_s, on_progress=on_progress)
        delay = f"{result.delay_s:.1f} s" if result.delay_s is not None else "unknown"
        how = (f"cold start: a worker started and answered after a queue delay of {delay}" if result.cold
               else f"it was already warm (queue delay {delay})")
        text = f"{name} is warm: {how}; podtui waited {result.total_s:.1f} s"
        activity.info("wake %s: %s", name, text)
        return text

    def test(self, endpoint_id: str, on_token: Callable[[str], None]) -> str:
        """See TuiServices.test_endpoint."""
        name = self._name(endpoint_id)
        activity.info("test %s: streaming a chat completion through /openai/v1", name)
        result = chat_test(self._runtime(endpoint_id), prompt=ENDPOINT_TEST_PROMPT, max_tokens=TEST_MAX_TOKENS,
                           timeout_s=self.test_timeout_s, on_token=on_token)
        first = f"first token after {result.first_token_s:.2f} s" if result.first_token_s is not None else "no tokens"
        rate = f", {result.tokens_per_s:.1f} tokens/s" if result.tokens_per_s else ""
        models = f" (its model list took {result.models_s:.2f} s)" if result.models_s is not None else ""
        text = (f"{name} answered with model {result.model}{models}: {first}, {result.tokens} tokens in "
                f"{result.total_s:.2f} s{rate}")
        activity.info("test %s: %s", name, text)
        return text

    # ---- keep-alive ----------------------------------------------------------------------------
    def toggle_keep_warm(self, endpoint_id: str) -> str:
        """See TuiServices.toggle_keep_warm."""
        with self._lock:
            warmth = self._warm.pop(endpoint_id, None)
            status = self._listed.get(endpoint_id)
        if warmth is not None and not warmth.ended and warmth.watch is not None:
            warmth.stop()
            text = f"keep-alive off for {warmth.name}: {_spent(warmth.watch.summary())}"
            activity.info(text)
            return text
        if status is None:
            raise PodtuiError(f"endpoint {endpoint_id} is not in the list yet", "wait for the list to refresh")
        name = status.endpoint.name or endpoint_id
        idle = status.endpoint.idle_timeout_s
        price = status.price_per_worker_hr
        costs = EndpointCosts(float(idle) if idle is not None else None, price,
                              "" if price is not None else "price unknown: the catalog lists none for its pools")
        warmth = _Warmth(name, time.monotonic(), self.keep_warm_idle_s)
        warmth.watch = KeepWarm(self._runtime(endpoint_id), keep_warm=True, idle_limit_s=self.keep_warm_idle_s,
                                ping_every_s=None, poll_s=self.keep_warm_poll_s, costs=lambda: costs,
                                emit=lambda kind, data: self._keep_warm_event(warmth, kind, data))
        with self._lock:
            self._warm[endpoint_id] = warmth
        warmth.watch.start()
        limit = format_uptime(self.keep_warm_idle_s)
        cost = (f"≈ ${self.keep_warm_idle_s / 3600 * price:.2f} at {format_price(price)}/hr per worker"
                if price is not None else "billed as worker time; the price of its pools is unknown")
        text = (f"keep-alive on for {name}: a no-op job every "
                f"{ping_interval(float(idle) if idle is not None else RUNPOD_DEFAULT_IDLE_S):g} s keeps one worker "
                f"warm for {limit}, then it stops by itself (k stops it now, and so does quitting podtui); "
                f"it costs up to {limit} of worker time ({cost})")
        activity.info(text)
        return text

    def _keep_warm_event(self, warmth: _Warmth, kind: str, data: dict) -> None:
        """KeepWarm's events (its own thread): into the activity log; its end and its warnings as news."""
        if kind == "keep_warm" and not data.get("on"):
            warmth.ended = True
            self._tell(f"keep-alive for {warmth.name} ended after {format_uptime(warmth.idle_limit_s)} "
                       f"(its idle limit): {_spent(data)}")
            threading.Thread(target=warmth.stop, daemon=True, name="keep-warm stop").start()
        elif kind == "warning":
            fix = f" (fix: {data['fix']})" if data.get("fix") else ""
            self._tell(f"keep-alive for {warmth.name}: {data.get('message', '')}{fix}", warning=True)
        elif kind == "state":
            activity.info("keep-alive %s: endpoint is %s (was %s)", warmth.name, data.get("to"), data.get("from"))
        elif kind in ("ping", "wake_sent", "woken"):
            activity.info("keep-alive %s: %s %s", warmth.name, kind.replace("_", " "), data.get("job_id", ""))

    # ---- logs and delete -----------------------------------------------------------------------
    def log_follower(self, endpoint_id: str) -> LineFollower:
        """See TuiServices.endpoint_log_follower."""
        return EndpointLogFollower(self.rest, endpoint_id, title=f"worker logs of endpoint {self._name(endpoint_id)}",
                                   tail=self.log_tail, rescan_s=self.log_rescan_s)

    def delete(self, endpoint_id: str) -> str:
        """See TuiServices.delete_endpoint; its keep-alive stops first."""
        name = self._name(endpoint_id)
        with self._lock:
            warmth = self._warm.pop(endpoint_id, None)
        if warmth is not None:
            warmth.stop()
        self.rest.delete_endpoint(endpoint_id)
        with self._lock:
            self._listed.pop(endpoint_id, None)
            client = self._clients.pop(endpoint_id, None)
        if client is not None:
            client.close()
        text = f"endpoint {endpoint_id} ({name}) deleted, with the template bound to it"
        activity.info(text)
        return text

    def close(self) -> None:
        """Stop every keep-alive and close the runtime clients (the REST client is the provider's)."""
        with self._lock:
            warm, self._warm = list(self._warm.values()), {}
            clients, self._clients = list(self._clients.values()), {}
        for warmth in warm:
            warmth.stop(timeout_s=1.0)
        for client in clients:
            client.close()


def _wake_words(kind: str, data: dict) -> str:
    """One line for a wake progress event (endpoint_runtime.wake's on_progress kinds)."""
    if kind == "state":
        return f"the endpoint is {data.get('state')}"
    if kind == "queued":
        return f"sent the wake job {data.get('job_id')} (the worker's model list: nothing is generated)"
    if kind == "running":
        return "a worker took the wake job"
    why = ""
    diagnosis = (data.get("endpoint") or {}).get("diagnosis")
    if diagnosis:
        why = f" — {diagnosis['cause']}: {diagnosis['advice']}"
    return f"waiting for a worker (cold start) … {data.get('elapsed_s', 0):.0f} s{why}"


def _spent(summary: dict) -> str:
    """What a keep-alive bought: KeepWarm.summary()'s pings, worker-seconds and cost."""
    cost = f"${summary['cost_usd']:.4f}" if summary.get("cost_usd") is not None else "price unknown"
    return (f"{summary.get('pings', 0)} ping(s) kept a worker up {summary.get('kept_warm_s', 0):g} "
            f"worker-seconds ({cost})")


class _Stopped(Exception):
    """The log view closed: ends log_lines at its next look for new workers."""


class _StoppingEndpoints(RunpodEndpoints):
    """The same REST client, for one log view: once `stop` is set, a worker's log ends at its next
    line and the next look for new workers ends the whole follow (log_lines takes no stop of its
    own; a worker whose stream is silent holds its connection until its next line)."""

    def __init__(self, rest: RunpodEndpoints, stop: threading.Event) -> None:
        super().__init__(rest.api, rest.image, log_quiet_s=rest.log_quiet_s)
        self._stop = stop

    def workers(self, endpoint_id: str):
        if self._stop.is_set():
            raise _Stopped()
        return super().workers(endpoint_id)

    def worker_log(self, *args, **kwargs):
        for line in super().worker_log(*args, **kwargs):
            if self._stop.is_set():
                return
            yield line


class EndpointLogFollower(LineFollower):
    """Every active worker's log of one endpoint, `worker  ts  line`, new workers picked up every
    rescan_s seconds; log_lines' notes (no active worker, a stream resumed) appear as `podtui:` lines."""

    def __init__(self, rest: RunpodEndpoints, endpoint_id: str, *, title: str, tail: int, rescan_s: float) -> None:
        self.rest = rest
        self.endpoint_id = endpoint_id
        self.title = title
        self.tail = tail
        self.rescan_s = rescan_s

    def follow(self, emit: Emit, stop: threading.Event) -> None:
        client = _StoppingEndpoints(self.rest, stop)

        def lines():
            for worker_id, line in log_lines(client, self.endpoint_id, follow=True, tail=self.tail,
                                             note=lambda text: emit([f"podtui: {text}"]), rescan_s=self.rescan_s):
                yield f"{worker_id}  {line.ts + '  ' if line.ts else ''}{line.line}"

        IterableFollower(lines, self.title).follow(emit, stop)
