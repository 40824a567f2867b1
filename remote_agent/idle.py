"""Idle auto-stop: a pod nobody uses stops itself through Runpod's REST v2 API.

Forgotten pods that keep billing are Runpod users' most expensive mistake (runpodctl's stop-after
flags were accepted and never fired). With IDLE_STOP_MINUTES set, `remote-agent boot` runs an
IdleWatcher thread: every poll it asks each probe whether anything happened since the last poll —
an engine request (llama-server `/metrics` or `/slots`, koboldcpp `/api/extra/perf`), an open SSH
session or tunnel (established TCP connections to sshd), a model download growing the models
directory. Any activity resets the clock. Idle past the limit minus the warning lead, it warns in
the log; idle past the limit, it sends `POST /v2/pods/{id}/action {"action": "stop"}` once (retried
only if the request failed). Time is injectable (a clock function) so tests run in seconds.
The daemon runs one without a limit (`IdleWatcher.tracking`) to report `idle_s` in `status`, which
podtui shows as "idle N min, still billing". Standard library only.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from remote_agent.engine_key import auth_headers

ESTABLISHED = "01"  # TCP state code in /proc/net/tcp


class ActivityProbe(Protocol):
    name: str

    def active(self) -> bool:
        """True when something happened since the previous call (the first call sets a baseline)."""


class StopRequestError(Exception):
    """The stop request failed; the message says why and what to check (never the API key)."""


# --- probes -------------------------------------------------------------------------------------


def _get(url: str, timeout: float, headers: dict[str, str] | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


class EngineProbe:
    """Requests seen by the engine on 127.0.0.1:<port>, whichever engine it is.

    llama-server: `/metrics` (only with --metrics) has counters that move with every request and a
    requests_processing gauge; otherwise `/slots` shows is_processing and each slot's last id_task,
    which changes even when a short request started and ended between two polls. koboldcpp:
    `/api/extra/perf` has total_gens, queue and idle. An unreachable engine is not activity.
    Every request carries the engine's API key (api_key: a function, since a swap whose ARGS set
    another key changes it): without it llama-server answers /metrics and /slots with 401.
    """

    name = "engine request"

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 2.0,
                 api_key: Callable[[], str | None] = lambda: None) -> None:
        self.base = f"http://{host}:{port}"
        self.timeout = timeout
        self.api_key = api_key
        self._previous: object = None

    def _observe(self) -> tuple[object, bool] | None:
        """(marker that changes with every request, busy right now) or None if unreachable."""
        headers = auth_headers(self.api_key())
        try:
            status, body = _get(self.base + "/metrics", self.timeout, headers)
            if status == 200 and "llamacpp:" in body:
                values = {}
                for line in body.splitlines():
                    if line.startswith("llamacpp:"):
                        key, _, value = line.partition(" ")
                        values[key] = value.strip()
                marker = ("metrics", values.get("llamacpp:prompt_tokens_total"),
                          values.get("llamacpp:n_decode_total"))
                busy = float(values.get("llamacpp:requests_processing") or 0) > 0
                return marker, busy
            status, body = _get(self.base + "/slots", self.timeout, headers)
            if status == 200:
                slots = json.loads(body)
                marker = ("slots", tuple((s.get("id"), s.get("id_task")) for s in slots))
                return marker, any(s.get("is_processing") for s in slots)
            status, body = _get(self.base + "/api/extra/perf", self.timeout, headers)
            if status == 200:
                perf = json.loads(body)
                marker = ("kobold", perf.get("total_gens"), perf.get("total_img_gens"))
                return marker, bool(perf.get("queue")) or perf.get("idle") == 0
        except (OSError, ValueError, TypeError, AttributeError):
            return None
        return None

    def active(self) -> bool:
        seen = self._observe()
        if seen is None:
            return False
        marker, busy = seen
        moved = self._previous is not None and marker != self._previous
        self._previous = marker
        return busy or moved


def established_connections(port: int, proc_net: Path = Path("/proc/net")) -> int:
    """Established TCP connections whose local port is `port` (IPv4 and IPv6)."""
    count = 0
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc_net / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == ESTABLISHED:
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


class SshSessionProbe:
    """Open SSH sessions and tunnels: an established connection to sshd is someone using the pod."""

    name = "SSH session"

    def __init__(self, sshd_port: int, proc_net: Path = Path("/proc/net")) -> None:
        self.sshd_port = sshd_port
        self.proc_net = proc_net

    def active(self) -> bool:
        return established_connections(self.sshd_port, self.proc_net) > 0


class DownloadProbe:
    """A model download in progress (the models directory keeps growing) is not idleness."""

    name = "model download"

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)
        self._previous: tuple[int, int] | None = None

    def _size(self) -> tuple[int, int]:
        total = files = 0
        for folder, _dirs, names in os.walk(self.models_dir):
            for name in names:
                try:
                    total += os.stat(os.path.join(folder, name)).st_size
                    files += 1
                except OSError:
                    pass
        return total, files

    def active(self) -> bool:
        size = self._size()
        moved = self._previous is not None and size != self._previous
        self._previous = size
        return moved


# --- the stop request -----------------------------------------------------------------------------


def stop_pod(api_url: str, pod_id: str, api_key: str, timeout: float = 20.0) -> None:
    """`POST {api_url}/v2/pods/{pod_id}/action` with `{"action": "stop"}` (Runpod REST v2)."""
    request = urllib.request.Request(
        f"{api_url.rstrip('/')}/v2/pods/{pod_id}/action",
        data=json.dumps({"action": "stop"}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                 "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        hint = {
            401: "the pod's RUNPOD_API_KEY was refused; stop the pod from the console or podtui",
            403: "the pod's RUNPOD_API_KEY may not stop this pod; stop it from the console or podtui",
            404: f"Runpod does not know pod {pod_id}; check RUNPOD_POD_ID",
            409: "the pod is not in a state that can be stopped (already stopping?)",
        }.get(exc.code, "Runpod's API answered with an error; it is retried")
        raise StopRequestError(f"stop request answered HTTP {exc.code}: {hint}") from None
    except OSError as exc:
        raise StopRequestError(f"stop request failed ({exc.__class__.__name__}: {exc}); "
                               "it is retried") from None


# --- the watcher ------------------------------------------------------------------------------------


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _never_stop() -> None:
    raise AssertionError("a tracking-only IdleWatcher has no limit and never stops the pod")


class IdleWatcher:
    """Polls the probes; `last_activity` is when one last saw something. With `limit_s` it warns
    and stops the pod; with `limit_s=None` it only keeps the clock (see `tracking`)."""

    def __init__(
        self,
        limit_s: float | None,
        probes: Sequence[ActivityProbe],
        stop: Callable[[], None],
        log: Callable[[str], None],
        *,
        warn_ahead_s: float = 300.0,
        poll_s: float = 15.0,
        retry_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit_s = limit_s
        self.probes = list(probes)
        self.stop = stop
        self.log = log
        self.warn_ahead_s = min(warn_ahead_s, limit_s / 2) if limit_s is not None else 0.0
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.clock = clock
        self.last_activity = clock()
        self.warned = False
        self.stopped = False
        self.stop_attempts = 0
        self._next_attempt = 0.0
        for probe in self.probes:  # baseline, so the first real poll can see change
            probe.active()

    @classmethod
    def tracking(cls, probes: Sequence[ActivityProbe], *, poll_s: float = 15.0,
                 clock: Callable[[], float] = time.monotonic) -> "IdleWatcher":
        """A watcher that only measures idleness: no warnings, no stop request."""
        return cls(None, probes, _never_stop, lambda line: None, poll_s=poll_s, clock=clock)

    @property
    def idle_s(self) -> float:
        """Seconds since a probe last saw activity (or since the watcher started)."""
        return max(0.0, self.clock() - self.last_activity)

    def tick(self) -> None:
        now = self.clock()
        seen = [probe.name for probe in self.probes if probe.active()]
        if seen:
            if self.warned:
                self.log(f"[idle] activity again ({', '.join(seen)}): idle clock reset, "
                         "the pod keeps running")
            self.last_activity, self.warned = now, False
            return
        if self.stopped or self.limit_s is None:
            return
        idle = now - self.last_activity
        if idle >= self.limit_s:
            if now < self._next_attempt:
                return
            self.stop_attempts += 1
            try:
                self.stop()
            except StopRequestError as exc:
                self._next_attempt = now + self.retry_s
                self.log(f"[idle] could not stop the pod: {exc}")
                return
            self.stopped = True
            self.log(f"[idle] no requests, SSH sessions or downloads for {_minutes(idle)}: "
                     "asked Runpod to stop this pod (its volume is kept; resume it when needed)")
        elif idle >= self.limit_s - self.warn_ahead_s and not self.warned:
            self.warned = True
            self.log(f"[idle] WARNING: no requests, SSH sessions or downloads for {_minutes(idle)}; "
                     f"this pod stops itself in {_minutes(self.limit_s - idle)} unless one arrives "
                     "(open a tunnel or send a request to keep it; unset IDLE_STOP_MINUTES to never stop)")

    def run(self, done: threading.Event) -> None:
        while not done.wait(self.poll_s):
            self.tick()
            if self.stopped:
                return
