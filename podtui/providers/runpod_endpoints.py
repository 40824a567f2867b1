"""Runpod Serverless endpoints through REST v2 (the spec: openapi-v2.json; SERVERLESS.md §4).

`/v2/serverless` (list, create), `/v2/serverless/{id}` (read, PATCH, DELETE), the workers view
`/v2/serverless/{id}/workers`, a worker's log `/v2/serverless/{id}/workers/{workerId}/logs` (SSE)
and the GPU catalog's serverless pools (`/v2/catalog/gpus`, field `pool`). The HTTP client, the
key, retries and errors are podtui.providers.runpod_api's, shared with the pod provider.

Field names are the spec's. Facts this module relies on (SERVERLESS.md):
- GPUs are chosen by **pool** id (`ADA_24`), not by the type id pods take (§4.2);
- `timeout` is in **milliseconds** (§4.3); `workers.idleTimeout` 1–3600 s;
- the OpenAI-compatible base URL is `https://api.runpod.ai/v2/{id}/openai/v1`, on the runtime
  host, and is not among the endpoint's `requestUrls` (§3.1, §4.3);
- worker-log event ids are timestamps a reconnect sends back as `Last-Event-ID` (§4.2).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from podtui.providers.base import SECRET_ENV_NAMES, LogLine, ProviderError
from podtui.providers.runpod_api import MalformedResponse, RunpodApi, Subject, check_api_url

DEFAULT_RUNTIME_URL = "https://api.runpod.ai/v2"   # §3.1: the runtime host, not the REST one
RUNTIME_URL_ENV = "PODTUI_RUNPOD_RUNTIME_URL"      # tests point it at a loopback double
WORKER_STATUSES = ("RUNNING", "IDLE", "INITIALIZING", "THROTTLED", "UNHEALTHY")   # §4.3 WorkerStatus
LOG_TAIL_MAX = 5000                                # the spec's LogTail maximum
RESOURCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class EndpointNotFound(ProviderError):
    pass


ENDPOINTS = Subject(noun="endpoint", listing="podtui endpoints list", access="serverless endpoints",
                    not_found=EndpointNotFound)


def path_id(value: str, what: str = "endpoint") -> str:
    """An endpoint or worker id for a URL path; ProviderError for anything but a plain id."""
    if not RESOURCE_ID.fullmatch(value or ""):
        raise ProviderError(f"{value!r} is not a Runpod {what} id", "run `podtui endpoints list` to see the ids")
    return value


def runtime_url() -> str:
    """The runtime API's base (`https://api.runpod.ai/v2`, or PODTUI_RUNPOD_RUNTIME_URL)."""
    return check_api_url(os.environ.get(RUNTIME_URL_ENV) or DEFAULT_RUNTIME_URL)


def openai_base_url(endpoint_id: str) -> str:
    """`<runtime>/{id}/openai/v1`: where OpenAI clients point (§3.2), with the Runpod key as bearer."""
    return f"{runtime_url()}/{path_id(endpoint_id)}/openai/v1"


def hide_secrets(env: dict[str, str]) -> dict[str, str]:
    """env with the values of secret names (HF_TOKEN, API keys) replaced by `<set, hidden>`."""
    return {k: ("<set, hidden>" if k in SECRET_ENV_NAMES and v.strip().lower() != "none" else v)
            for k, v in env.items()}


def _obj(value) -> dict:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Endpoint:
    """One serverless endpoint as Runpod reports it; `raw` is the Endpoint JSON (it may hold
    secrets in `env`: kept out of reprs, and as_dict hides them)."""

    id: str
    name: str
    type: str                      # QUEUE | LOAD_BALANCER
    pools: tuple[str, ...]         # GPU pool ids, in priority order; () on a CPU endpoint
    gpu_count: int
    cpu: tuple[str, ...]           # CPU flavors ("cpu5c x4") on a CPU endpoint
    workers_min: int
    workers_max: int
    idle_timeout_s: int | None
    scaling: str                   # QUEUE_DELAY | REQUEST_COUNT
    scaling_value: float
    timeout_ms: int
    flashboot: str                 # OFF | FLASHBOOT | PRIORITY_FLASHBOOT
    network_volumes: tuple[str, ...]
    image: str
    created_at: str
    env: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    def as_dict(self) -> dict:
        """JSON-ready: the fields above (env with secrets hidden) plus `openai_base_url`."""
        return {"id": self.id, "name": self.name, "type": self.type, "pools": list(self.pools),
                "gpu_count": self.gpu_count, "cpu": list(self.cpu),
                "workers": {"min": self.workers_min, "max": self.workers_max},
                "idle_timeout_s": self.idle_timeout_s,
                "scaling": {"type": self.scaling, "value": self.scaling_value},
                "execution_timeout_s": self.timeout_ms / 1000, "flashboot": self.flashboot,
                "network_volumes": list(self.network_volumes), "image": self.image,
                "model": self.env.get("MODEL", ""), "env": hide_secrets(self.env),
                "created_at": self.created_at, "openai_base_url": openai_base_url(self.id)}


def endpoint_from_json(data: object) -> Endpoint:
    """An Endpoint from the spec's `Endpoint` JSON; MalformedResponse when id/workers are missing."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("workers"), dict):
        raise MalformedResponse("Runpod sent an endpoint podtui cannot read (no id or workers)",
                                "try again; if it persists the API may have changed")
    path_id(data["id"])
    gpu, workers, scaling = _obj(data.get("gpu")), data["workers"], _obj(data.get("scaling"))
    env = {str(k): str(v) for k, v in _obj(data.get("env")).items()}
    value = scaling.get("queueDelay", scaling.get("requestCount", 0))
    return Endpoint(
        id=data["id"], name=str(data.get("name") or ""), type=str(data.get("type") or "QUEUE"),
        pools=tuple(str(p) for p in gpu.get("pools") or ()), gpu_count=int(gpu.get("count") or (1 if gpu else 0)),
        cpu=tuple(f"{c.get('id')} x{c.get('vcpuCount')}" for c in data.get("cpu") or () if isinstance(c, dict)),
        workers_min=int(workers.get("min") or 0), workers_max=int(workers.get("max") or 0),
        idle_timeout_s=workers.get("idleTimeout"), scaling=str(scaling.get("type") or ""),
        scaling_value=float(value or 0), timeout_ms=int(data.get("timeout") or 0),
        flashboot=str(data.get("flashboot") or "OFF"),
        network_volumes=tuple(str(v) for v in data.get("networkVolumes") or ()),
        image=str(data.get("image") or ""), created_at=str(data.get("createdAt") or ""), env=env, raw=data)


@dataclass(frozen=True)
class Worker:
    """One active worker (§4.3 Worker); status is one of WORKER_STATUSES."""

    id: str
    status: str
    is_stale: bool = False        # runs an older release (a rolling update is under way)
    gpu_type: str = ""
    data_center: str = ""
    uptime_s: int | None = None
    started_at: str = ""

    def as_dict(self) -> dict:
        return {"id": self.id, "status": self.status, "is_stale": self.is_stale, "gpu_type": self.gpu_type,
                "data_center": self.data_center, "uptime_s": self.uptime_s, "started_at": self.started_at}


@dataclass(frozen=True)
class WorkersView:
    """`GET /v2/serverless/{id}/workers`: the active workers and their count per status.
    `summary` has the keys running, idle, initializing, throttled, unhealthy, total (ints)."""

    workers: tuple[Worker, ...]
    summary: dict[str, int]
    endpoint_version: int | None = None

    def count(self, status: str) -> int:
        """Workers in `status` (a WORKER_STATUSES word, any case), from the summary."""
        return int(self.summary.get(status.lower(), 0))

    def as_dict(self) -> dict:
        return {"summary": dict(self.summary), "endpoint_version": self.endpoint_version,
                "workers": [w.as_dict() for w in self.workers]}


def workers_from_json(data: object) -> WorkersView:
    """A WorkersView from the spec's ListEndpointWorkersResponse. A summary key Runpod leaves out
    is counted from the workers array (the spec says the summary is exactly that roll-up)."""
    if not isinstance(data, dict) or not isinstance(data.get("workers"), list):
        raise MalformedResponse("Runpod sent a workers list podtui cannot read", "try again in a minute")
    workers = []
    for item in data["workers"]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        workers.append(Worker(item["id"], str(item.get("status") or "").upper(), bool(item.get("isStale")),
                              str(item.get("gpuTypeId") or ""), str(item.get("dataCenterId") or ""),
                              item.get("uptimeSeconds"), str(item.get("startedAt") or "")))
    given = _obj(data.get("summary"))
    summary = {s.lower(): int(given.get(s.lower(), sum(w.status == s for w in workers))) for s in WORKER_STATUSES}
    summary["total"] = int(given.get("total", len(workers)))
    version = data.get("endpointVersion")
    return WorkersView(tuple(workers), summary, version if isinstance(version, int) else None)


@dataclass(frozen=True)
class ServerlessGpu:
    """A GPU type of the catalog with its serverless pool (None: not offered for serverless)."""

    type_id: str                  # what pods take, e.g. "NVIDIA GeForce RTX 4090"
    name: str                     # "RTX 4090"
    pool: str | None              # what endpoints take, e.g. "ADA_24"
    memory_gb: int
    price_per_hr: float | None    # price.serverless: list price per GPU-hour of its pool


@dataclass(frozen=True)
class EndpointSpec:
    """What `endpoints create` asks for (seed 002's settings). `env` is the worker's whole
    environment (MODE_TO_RUN=serverless included; may hold HF_TOKEN: kept out of reprs)."""

    name: str
    image: str
    pools: tuple[str, ...]
    gpu_count: int = 1
    workers_min: int = 0
    workers_max: int = 5
    idle_timeout_s: int = 120
    execution_timeout_s: int = 600
    flashboot: bool = True
    queue_delay_s: float = 15
    network_volume: str | None = None
    disk_gb: int = 50
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def body(self) -> dict:
        """The CreateEndpointRequest (§4.3): QUEUE type, scaling on queue delay, timeout in ms."""
        body = {"name": self.name, "type": "QUEUE", "image": self.image, "env": dict(self.env),
                "disk": self.disk_gb, "gpu": {"pools": list(self.pools), "count": self.gpu_count},
                "workers": {"min": self.workers_min, "max": self.workers_max, "idleTimeout": self.idle_timeout_s},
                "scaling": {"type": "QUEUE_DELAY", "queueDelay": self.queue_delay_s},
                "timeout": self.execution_timeout_s * 1000,
                "flashboot": "FLASHBOOT" if self.flashboot else "OFF"}
        if self.network_volume:
            body["networkVolumes"] = [self.network_volume]
        return body


def _log_line(data: str, event_id: str) -> LogLine:
    try:
        payload = json.loads(data)
    except ValueError:
        return LogLine(data, event_id=event_id)
    if not isinstance(payload, dict):
        return LogLine(str(payload), event_id=event_id)
    return LogLine(str(payload.get("line", "")), ts=str(payload.get("ts", "")),
                   source=str(payload.get("source", "")), event_id=event_id)


class RunpodEndpoints:
    """The serverless calls over one RunpodApi (blocking). `image` is podtui's configured image;
    a log backfill is over when the stream is quiet log_quiet_s seconds."""

    def __init__(self, api: RunpodApi, image: str = "", *, log_quiet_s: float = 2.0) -> None:
        self.api = api
        self.image = image
        self.log_quiet_s = log_quiet_s

    def __repr__(self) -> str:
        return f"RunpodEndpoints({self.api!r})"

    def close(self) -> None:
        self.api.close()

    def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint of the account (`GET /v2/serverless`, the list wrapped in `endpoints`)."""
        data = self.api.call("GET", "/v2/serverless", what="listing serverless endpoints", subject=ENDPOINTS)
        if not isinstance(data, dict) or not isinstance(data.get("endpoints"), list):
            raise MalformedResponse("Runpod sent an endpoint list podtui cannot read", "try again in a minute")
        return [endpoint_from_json(item) for item in data["endpoints"]]

    def get_endpoint(self, endpoint_id: str) -> Endpoint:
        """One endpoint; EndpointNotFound when it does not exist."""
        return endpoint_from_json(self.api.call("GET", f"/v2/serverless/{path_id(endpoint_id)}",
                                                what=f"reading endpoint {endpoint_id}", subject=ENDPOINTS))

    def create_endpoint(self, body: dict) -> Endpoint:
        """`POST /v2/serverless` (201) with a CreateEndpointRequest. Never retried after a timeout:
        a second endpoint would be created."""
        return endpoint_from_json(self.api.call("POST", "/v2/serverless", body=body, what="creating the endpoint",
                                                idempotent=False, subject=ENDPOINTS))

    def update_endpoint(self, endpoint_id: str, body: dict) -> Endpoint:
        """`PATCH /v2/serverless/{id}` with an UpdateEndpointRequest; returns the full endpoint.
        An `env` sent replaces the endpoint's whole env (PATCH semantics, §4.3)."""
        return endpoint_from_json(self.api.call("PATCH", f"/v2/serverless/{path_id(endpoint_id)}", body=body,
                                                what=f"updating endpoint {endpoint_id}", idempotent=False,
                                                subject=ENDPOINTS))

    def delete_endpoint(self, endpoint_id: str) -> None:
        """`DELETE /v2/serverless/{id}` (204): Runpod also deletes its bound template, terminates its
        workers and cancels its jobs (§4.2)."""
        self.api.call("DELETE", f"/v2/serverless/{path_id(endpoint_id)}", what=f"deleting endpoint {endpoint_id}",
                      subject=ENDPOINTS)

    def workers(self, endpoint_id: str) -> WorkersView:
        """The endpoint's active workers (`GET /v2/serverless/{id}/workers`)."""
        return workers_from_json(self.api.call("GET", f"/v2/serverless/{path_id(endpoint_id)}/workers",
                                               what=f"reading endpoint {endpoint_id}'s workers", subject=ENDPOINTS))

    def serverless_gpus(self) -> list[ServerlessGpu]:
        """The GPU catalog with each type's serverless pool and price (`GET /v2/catalog/gpus`)."""
        data = self.api.call("GET", "/v2/catalog/gpus", what="reading the GPU catalog", subject=ENDPOINTS)
        if not isinstance(data, dict) or not isinstance(data.get("gpus"), list):
            raise MalformedResponse("Runpod sent a GPU catalog podtui cannot read", "try again in a minute")
        gpus = []
        for item in data["gpus"]:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                price = _obj(item.get("price")).get("serverless")
                gpus.append(ServerlessGpu(item["id"], str(item.get("name") or ""), item.get("pool") or None,
                                          int(item.get("memory") or 0),
                                          float(price) if isinstance(price, (int, float)) else None))
        return gpus

    def worker_log(self, endpoint_id: str, worker_id: str, *, tail: int | None = 100, source: str | None = None,
                   last_event_id: str | None = None, follow: bool = False, max_read_s: float = 15.0) -> Iterator[LogLine]:
        """A worker's log lines (SSE). `tail` lines of backfill (0–5000; ignored by Runpod when
        last_event_id resumes after that event), `source` container|system|None (both). Without
        follow it ends when the stream is quiet for log_quiet_s seconds or after max_read_s. Raises
        RunpodUnavailable when the connection drops (resume with the last event_id seen)."""
        params: dict = {}
        if tail is not None:
            params["tail"] = max(0, min(int(tail), LOG_TAIL_MAX))
        if source:
            params["source"] = source
        headers = {"Last-Event-ID": last_event_id} if last_event_id else None
        events = self.api.stream_events(
            f"/v2/serverless/{path_id(endpoint_id)}/workers/{path_id(worker_id, 'worker')}/logs",
            params=params, headers=headers, read_timeout_s=3600.0 if follow else self.log_quiet_s,
            max_duration_s=None if follow else max_read_s, what=f"reading worker {worker_id}'s log",
            subject=ENDPOINTS)
        for event in events:
            yield _log_line(event.data, event.event_id)
