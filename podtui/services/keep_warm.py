"""The watch `podtui serve` keeps on its endpoint: state changes, the wake job, keep-alive and its cost.

Facts it builds on (SERVERLESS.md §3.3, §3.6):
- a job wakes a worker; its `delayTime` includes the cold start;
- a worker stays up `workers.idleTimeout` seconds after its last job, and that idle time is billed;
- so a no-op job every `idleTimeout − margin` keeps one worker warm, and every such ping is billed
  as worker time. A ping is the wake job (`/v1/models`, answered without generating).

Rules:
- pings go out only while no client request is in flight (a busy worker is not idling, and a ping
  queued behind a long answer could make the queue-delay scaler start a SECOND worker);
- at most one job of serve's own is outstanding: while the wake job or a ping waits in the queue
  (a cold or crash-looping endpoint) no ping is sent;
- keep-alive stops after `idle_limit_s` without client requests (serve's start counts as one) and
  starts again with the next request.

Cost: without pings a worker goes cold `idleTimeout` after its last job; with them, `idleTimeout`
after the last ping. Each ping at time t therefore buys `t − (the previous ping or request end)`
worker-seconds, summed as `kept_warm_s`, priced with the endpoint's pool price from REST v2
(`price.serverless` per GPU-hour × `gpu.count`, the dearest of its pools: an upper bound).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from podtui.providers.base import ProviderError
from podtui.providers.runpod_runtime import RuntimeClient
from podtui.services.endpoint_runtime import WAKE_INPUT, WAKE_POLICY, WARM, classify

RUNPOD_DEFAULT_IDLE_S = 5.0   # §3.3: an endpoint's default idle timeout


def ping_interval(idle_timeout_s: float) -> float:
    """Seconds between pings for an idle timeout: a margin of a quarter of it (at least 2 s, for
    the worker's ~1 s job fetch, §1.5), never under 1 s. 120 → 90, 5 → 3."""
    return max(1.0, idle_timeout_s - max(2.0, idle_timeout_s * 0.25))


@dataclass(frozen=True)
class EndpointCosts:
    """What REST v2 says about the endpoint (None: unknown) and, when a value is unknown, why."""

    idle_timeout_s: float | None = None
    price_per_hr: float | None = None    # per worker: the dearest pool's price × gpu.count
    note: str = ""


def endpoint_costs(endpoint_id: str, *, timeout_s: float = 5.0) -> EndpointCosts:
    """The endpoint's idle timeout and per-worker price from REST v2 (`GET /v2/serverless/{id}`,
    `GET /v2/catalog/gpus`), asked once without retries. Never raises: a failure is the note."""
    from podtui.providers.runpod import RunpodProvider
    from podtui.providers.runpod_api import RetryPolicy
    from podtui.providers.runpod_endpoints import RunpodEndpoints

    try:
        provider = RunpodProvider.from_environment(retry=RetryPolicy(max_retries=0), timeout_s=timeout_s)
    except ProviderError as exc:
        return EndpointCosts(note=exc.title)
    endpoints = RunpodEndpoints(provider.api)
    try:
        endpoint = endpoints.get_endpoint(endpoint_id)
        idle = float(endpoint.idle_timeout_s) if endpoint.idle_timeout_s is not None else None
        try:
            prices = [g.price_per_hr for g in endpoints.serverless_gpus()
                      if g.pool in endpoint.pools and g.price_per_hr is not None]
        except ProviderError as exc:
            return EndpointCosts(idle, None, f"price unknown: {exc.title}")
        price = max(prices) * max(1, endpoint.gpu_count) if prices else None
        return EndpointCosts(idle, price, "" if price is not None else "price unknown: no catalog price for its pools")
    except ProviderError as exc:
        return EndpointCosts(note=exc.title)
    finally:
        provider.api.close()


class KeepWarm:
    """Watches one endpoint from its own thread (`start`, `stop`); `request_started`/`request_ended`
    are called by the proxy's request threads. Events go to emit(kind, data), kinds: state,
    wake_sent, woken, keep_warm (on true/false), ping, warning. Times in seconds."""

    def __init__(self, client: RuntimeClient, *, keep_warm: bool, idle_limit_s: float, ping_every_s: float | None,
                 poll_s: float, emit: Callable[[str, dict], None],
                 costs: Callable[[], EndpointCosts] = EndpointCosts) -> None:
        self.client = client
        self.keep_warm = keep_warm
        self.idle_limit_s = idle_limit_s
        self.ping_every_s = ping_every_s
        self.poll_s = poll_s
        self.emit = emit
        self._costs_source = costs
        self.costs = EndpointCosts()
        self.state = "unknown"
        self.pings = 0
        self.kept_warm_s = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self._last_activity = time.monotonic()   # serve's start counts as a request
        self._last_touch = self._last_activity   # the worker's idle clock: last job sent or answered
        self._active = False
        self._wake_job: str | None = None
        self._ping_job: str | None = None
        self._health_failed = False

    # -- called from request threads -----------------------------------------------------------

    def request_started(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._last_activity = time.monotonic()
            resume = self.keep_warm and not self._active and self._thread is not None
            if resume:
                self._active = True
        if resume:
            self.emit("keep_warm", {"on": True, "reason": "a request arrived", **self._plan()})

    def request_ended(self) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._last_activity = self._last_touch = time.monotonic()

    # -- the watch thread ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="serve-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Ends the watch; a thread still inside a slow call is a daemon and dies with the process."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def summary(self) -> dict:
        """pings sent, kept_warm_s (worker-seconds the pings bought), cost_usd (None: price unknown)."""
        price = self.costs.price_per_hr
        return {"pings": self.pings, "kept_warm_s": round(self.kept_warm_s, 1), "price_per_hr": price,
                "cost_usd": round(self.kept_warm_s / 3600 * price, 4) if price is not None else None}

    def interval_s(self) -> float:
        if self.ping_every_s is not None:
            return self.ping_every_s
        return ping_interval(self.costs.idle_timeout_s or RUNPOD_DEFAULT_IDLE_S)

    def _plan(self) -> dict:
        price = self.costs.price_per_hr
        return {"interval_s": round(self.interval_s(), 2), "idle_limit_s": self.idle_limit_s,
                "idle_timeout_s": self.costs.idle_timeout_s, "price_per_hr": price,
                "max_worker_s_per_pause": self.idle_limit_s,
                "max_cost_per_pause_usd": round(self.idle_limit_s / 3600 * price, 4) if price is not None else None,
                "note": self.costs.note}

    def _run(self) -> None:
        try:
            self._send_wake()
            self.costs = self._costs_source()
            if self.keep_warm:
                with self._lock:
                    self._active = True
                self.emit("keep_warm", {"on": True, "reason": "serve started", **self._plan()})
            while True:
                self._poll_health()
                self._check_wake()
                self._keep_warm_step()
                if self._stop.wait(self.poll_s):
                    return
        except Exception as exc:   # a bug, not the endpoint: say so once, keep serving, no traceback
            self.emit("warning", {"message": f"the endpoint watch stopped ({type(exc).__name__}: {exc}); "
                                  "requests are still forwarded, without state changes or keep-alive",
                                  "fix": "restart podtui serve; report this if it happens again"})

    def _send_wake(self) -> None:
        try:
            job = self.client.run(WAKE_INPUT, WAKE_POLICY)
        except ProviderError as exc:
            self.emit("warning", {"message": f"the wake job was not sent: {exc.title}", "fix": exc.fix})
            return
        with self._lock:
            self._last_touch = time.monotonic()
        self._wake_job = job.id
        self.emit("wake_sent", {"job_id": job.id})

    def _set_state(self, state: str, **data) -> None:
        if state != self.state:
            previous, self.state = self.state, state
            self.emit("state", {"from": previous, "to": state, **data})

    def _poll_health(self) -> None:
        try:
            found = classify(self.client.health(), self.client.endpoint_id)
        except ProviderError as exc:
            if not self._health_failed:
                self.emit("warning", {"message": f"cannot read the endpoint's health: {exc.title}", "fix": exc.fix})
            self._health_failed = True
            return
        self._health_failed = False
        self._set_state(found.state, workers=found.workers, jobs=found.jobs,
                        diagnosis=found.as_dict()["diagnosis"])

    def _check_wake(self) -> None:
        if self._wake_job is None:
            return
        try:
            status = self.client.status(self._wake_job)
        except ProviderError as exc:
            self.emit("warning", {"message": f"cannot follow the wake job: {exc.title}", "fix": exc.fix})
            self._wake_job = None
            return
        if not status.terminal:
            return
        self._wake_job = None
        try:
            self.client.result(status)
        except ProviderError as exc:
            self.emit("warning", {"message": exc.title, "fix": exc.fix})
            return
        with self._lock:
            self._last_touch = time.monotonic()
        delay = status.delay_ms / 1000 if status.delay_ms is not None else None
        self.emit("woken", {"job_id": status.id, "delay_s": delay})
        self._set_state(WARM, workers={}, jobs={}, diagnosis=None, source="the wake job was answered")

    def _ping_outstanding(self) -> bool:
        """True while the last ping still waits; a ping that ended badly is reported once."""
        if self._ping_job is None:
            return False
        try:
            status = self.client.status(self._ping_job)
        except ProviderError:
            return False
        if not status.terminal:
            return True
        self._ping_job = None
        if status.status != "COMPLETED":
            self.emit("warning", {"message": f"keep-alive ping {status.id} ended {status.status}",
                                  "fix": f"read the worker's log: podtui endpoints logs {self.client.endpoint_id}"})
        return False

    def _keep_warm_step(self) -> None:
        if not self.keep_warm:
            return
        now = time.monotonic()
        with self._lock:
            idle_for = 0.0 if self._in_flight else now - self._last_activity
            turn_off = self._active and idle_for >= self.idle_limit_s
            if turn_off:
                self._active = False
            due = self._active and not self._in_flight and now - self._last_touch >= self.interval_s()
        if turn_off:
            self.emit("keep_warm", {"on": False, "reason": f"no requests for {idle_for:.0f} s", **self.summary()})
            return
        if not due or self._wake_job is not None or self._ping_outstanding():
            return   # the wake job (or the last ping) still waits: another would only queue behind it
        try:
            job = self.client.run(WAKE_INPUT, {**WAKE_POLICY, "ttl": max(10000, int(self.interval_s() * 2000))})
        except ProviderError as exc:
            self.emit("warning", {"message": f"keep-alive ping not sent: {exc.title}", "fix": exc.fix})
            return
        with self._lock:
            bought = now - self._last_touch
            self.kept_warm_s += bought
            self._last_touch = now
            self.pings += 1
        self._ping_job = job.id
        self.emit("ping", {"job_id": job.id, "kept_warm_s": round(self.kept_warm_s, 1)})
