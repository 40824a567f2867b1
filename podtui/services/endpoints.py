"""What the `podtui endpoints` verbs do with Runpod Serverless (REST v2; SERVERLESS.md §3.3, §3.4,
§4, §5), above the REST client podtui.providers.runpod_endpoints.

- create: podtui's image with MODE_TO_RUN=serverless, GPUs by pool (a type id is translated
  through the catalog), then the endpoint is READ BACK and compared with what was asked: Runpod
  once created GPU endpoints when CPU was asked (§5 #10);
- list: each endpoint with its workers view and the warnings that matter (max workers 0 after
  Runpod's 7-day idle scale-down, §3.3; UNHEALTHY workers, i.e. a crash loop, §5 #2);
- diagnose_queue: why a job sits IN_QUEUE, read from the workers view (§3.4).

Workers' logs are podtui.services.endpoint_logs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from podtui.errors import PodtuiError, UsageProblem
from podtui.providers.base import SECRET_ENV_NAMES, ProviderError
from podtui.providers.runpod import IMAGE_ENV, RunpodProvider
from podtui.providers.runpod_endpoints import (Endpoint, EndpointNotFound, EndpointSpec, RunpodEndpoints,
                                               ServerlessGpu, WorkersView, workers_from_json)

Progress = Callable[[str, str], None]     # phase, detail
VOLUME_PATH = "/runpod-volume"            # where serverless workers mount a network volume (§4.3)
MODE_ENV = "MODE_TO_RUN"                  # seed 001: pod (default) | serverless
ROLLOUT_NOTE = ("image and env changes make a new release that rolls out as workers cycle: running "
                "workers keep the old one until they are replaced")


def quiet(phase: str, detail: str) -> None:
    """A Progress that says nothing."""


def open_endpoints(on_wait: Callable[[str], None] | None = None,
                   warnings: list[str] | None = None) -> RunpodEndpoints:
    """The serverless client on the pod provider's API client: the same key (RUNPOD_API_KEY, the
    config, ~/.runpod), PODTUI_RUNPOD_API_URL, timeouts and retries; `image` from PODTUI_IMAGE or
    the config. Raises NoApiKey, ConfigError, ProviderError (a bad API URL)."""
    provider = RunpodProvider.from_environment(on_wait=on_wait, warnings=warnings)
    return RunpodEndpoints(provider.api, image=provider.image, log_quiet_s=provider.log_quiet_s)


def find_endpoint(client: RunpodEndpoints, ref: str) -> Endpoint:
    """The endpoint whose id or name is `ref`. Raises EndpointNotFound, ProviderError when a name
    is shared by several endpoints."""
    endpoints = client.list_endpoints()
    by_id = [e for e in endpoints if e.id == ref]
    found = by_id or [e for e in endpoints if e.name == ref]
    if not found:
        raise EndpointNotFound(f"no serverless endpoint has the id or name {ref!r}",
                               "run `podtui endpoints list` to see the endpoints and their ids")
    if len(found) > 1:
        raise ProviderError(f"{len(found)} endpoints are named {ref!r}", "name the endpoint by its id")
    return found[0]


# -- create -----------------------------------------------------------------------------------

def resolve_pools(wanted: Sequence[str], catalog: list[ServerlessGpu]) -> tuple[list[str], list[str]]:
    """Pool ids (in the order given, without repeats) for --gpu values that are pool ids or GPU
    type ids/names (translated through the catalog's `pool`, §4.2), and one note per translation.
    Raises UsageProblem for no value (naming the pools), a value that is neither, or a type not
    offered on serverless."""
    pools = sorted({g.pool for g in catalog if g.pool})
    choices = "; ".join(f"{p} ({', '.join(g.name or g.type_id for g in catalog if g.pool == p)})" for p in pools)
    if not wanted:
        raise UsageProblem("--gpu is needed: serverless workers run on GPU pools",
                           f"pass --gpu POOL (repeat it for fallbacks); pools now: {choices or 'none listed'}")
    found: list[str] = []
    notes: list[str] = []
    for value in wanted:
        text = value.strip()
        pool = next((p for p in pools if p.lower() == text.lower()), None)
        gpu = None if pool else next((g for g in catalog if text.lower() in (g.type_id.lower(), g.name.lower())), None)
        if gpu is not None and gpu.pool is None:
            raise UsageProblem(f"--gpu {value!r}: Runpod does not offer this GPU for serverless",
                               f"pick a pool: {choices}")
        if gpu is not None:
            pool = gpu.pool
            notes.append(f"GPU {gpu.type_id} is in serverless pool {pool}; workers run on any GPU of that pool")
        if pool is None:
            raise UsageProblem(f"--gpu {value!r} is neither a serverless pool nor a GPU type Runpod lists",
                               f"pick a pool: {choices}" if choices else "Runpod's catalog lists no pools now")
        if pool not in found:
            found.append(pool)
    return found, notes


def endpoint_env(model: str, *, ctx: str | None = None, engine: str | None = None,
                 max_concurrency: int | None = None, network_volume: str | None = None,
                 hf_token: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's env: MODE_TO_RUN=serverless, MODEL, CTX, ENGINE, MAX_CONCURRENCY, BASE_PATH
    (/runpod-volume with a network volume, seed 002), then `extra`, then HF_TOKEN."""
    env = {MODE_ENV: "serverless", "MODEL": model}
    if ctx is not None:
        env["CTX"] = str(ctx)
    if engine:
        env["ENGINE"] = engine
    if max_concurrency is not None:
        env["MAX_CONCURRENCY"] = str(max_concurrency)
    if network_volume:
        env["BASE_PATH"] = VOLUME_PATH
    env.update(extra or {})
    if hf_token:
        env["HF_TOKEN"] = hf_token
    return env


def parse_env(values: Sequence[str], option: str = "--env") -> dict[str, str]:
    """NAME=VALUE pairs. Raises UsageProblem for another form, for MODE_TO_RUN (podtui sets it) and
    for secrets (they would land in ps and shell history)."""
    env = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name or not name.replace("_", "").isalnum():
            raise UsageProblem(f"{option} {value!r} is not NAME=VALUE", f"write it as {option} NAME=VALUE")
        if name == MODE_ENV:
            raise UsageProblem(f"{option} {MODE_ENV}=… is podtui's to set", "an endpoint always runs MODE_TO_RUN=serverless")
        if name in SECRET_ENV_NAMES and text.strip().lower() != "none":
            raise UsageProblem(f"{option} {name}=… would put a secret on the command line",
                               "export HF_TOKEN in your shell and pass --with-hf-token"
                               if "HF" in name or "HUGGING" in name else f"do not pass {name} to an endpoint by hand")
        env[name] = text
    return env


def pick_image(client: RunpodEndpoints, image: str | None) -> str:
    """--image, else podtui's configured image (PODTUI_IMAGE, [runpod] image): the one `launch`
    uses. Raises ProviderError when none is configured."""
    chosen = image or client.image
    if not chosen:
        raise ProviderError("no image is configured for the endpoint's workers",
                            "build and push podtui's image (image/README.md), then pass --image REF, set "
                            f"{IMAGE_ENV}, or put image = \"REF\" under [runpod] in podtui's config file")
    return chosen


class Mismatch(NamedTuple):
    """A field Runpod holds differently from what was asked (`field` is a dotted path)."""

    field: str
    asked: object
    got: object

    def __str__(self) -> str:
        return f"{self.field}: asked {_shown(self.asked)}, Runpod has {_shown(self.got)}"


def _shown(value: object) -> str:
    return "nothing" if value is None else repr(value)


def compare(asked: object, got: object, path: str = "") -> list[Mismatch]:
    """Every field of `asked` (a request body) that `got` (the endpoint read back) holds otherwise;
    a GPU request answered with a CPU endpoint is one too. Secret env values show as `<hidden>`."""
    if isinstance(asked, dict):
        got_dict = got if isinstance(got, dict) else {}
        found = [m for key, value in asked.items()
                 for m in compare(value, got_dict.get(key), f"{path}.{key}" if path else key)]
        if not path and "gpu" in asked and got_dict.get("cpu"):
            found.append(Mismatch("cpu", None, got_dict["cpu"]))
        return found
    if asked == got:
        return []
    if path.startswith("env.") and path[4:] in SECRET_ENV_NAMES:
        return [Mismatch(path, "<hidden>", None if got is None else "<hidden, different>")]
    return [Mismatch(path, asked, got)]


@dataclass
class CreateResult:
    """The endpoint as read back after create, what differs from the request, and notes."""

    endpoint: Endpoint
    mismatches: list[Mismatch]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {**self.endpoint.as_dict(), "mismatches": [m._asdict() for m in self.mismatches],
                "notes": self.notes}


def create_endpoint(client: RunpodEndpoints, spec: EndpointSpec, progress: Progress = quiet) -> CreateResult:
    """POST the endpoint, then GET it back and compare with the request (§5 #10). Raises
    ProviderError subclasses from the API; a mismatch is returned, not raised."""
    body = spec.body()
    progress("create", f"asking Runpod for endpoint {spec.name!r} on {', '.join(spec.pools)}")
    created = client.create_endpoint(body)
    progress("created", f"endpoint {created.id}; reading it back to check what Runpod made")
    endpoint = client.get_endpoint(created.id)
    return CreateResult(endpoint, compare(body, endpoint.raw))


# -- update -----------------------------------------------------------------------------------

@dataclass
class Changes:
    """What `endpoints update` changes; None (or empty) leaves a field as it is."""

    name: str | None = None
    workers_min: int | None = None
    workers_max: int | None = None
    idle_timeout_s: int | None = None
    execution_timeout_s: int | None = None
    flashboot: bool | None = None
    queue_delay_s: float | None = None
    pools: list[str] | None = None
    image: str | None = None
    set_env: dict[str, str] = field(default_factory=dict, repr=False)
    unset_env: tuple[str, ...] = ()


@dataclass
class UpdateResult:
    before: Endpoint
    endpoint: Endpoint
    mismatches: list[Mismatch]
    rolling: bool                  # image or env changed: a new release rolls out (§4.3)

    def as_dict(self) -> dict:
        return {**self.endpoint.as_dict(), "mismatches": [m._asdict() for m in self.mismatches],
                "rolls_out_as_workers_cycle": self.rolling}


def update_body(current: Endpoint, changes: Changes) -> dict:
    """The UpdateEndpointRequest for what `changes` would really change on the endpoint now. `env`
    is sent whole (a PATCH replaces it, §4.3). Raises UsageProblem when nothing would change or
    workers min would be above max."""
    now = {"min": current.workers_min, "max": current.workers_max, "idleTimeout": current.idle_timeout_s}
    workers = {k: v for k, v in (("min", changes.workers_min), ("max", changes.workers_max),
                                 ("idleTimeout", changes.idle_timeout_s)) if v is not None and v != now[k]}
    low, high = workers.get("min", current.workers_min), workers.get("max", current.workers_max)
    if workers and low > high:
        raise UsageProblem(f"workers min {low} would be above max {high}", "raise --workers-max too")
    flashboot = None if changes.flashboot is None else ("FLASHBOOT" if changes.flashboot else "OFF")
    wanted = {
        "name": changes.name,
        "workers": workers or None,
        "timeout": None if changes.execution_timeout_s is None else changes.execution_timeout_s * 1000,
        "flashboot": flashboot,
        "scaling": None if changes.queue_delay_s is None else {"type": "QUEUE_DELAY", "queueDelay": changes.queue_delay_s},
        "gpu": {"pools": list(changes.pools)} if changes.pools and tuple(changes.pools) != current.pools else None,
        "image": changes.image,
    }
    env = {**current.env, **changes.set_env}
    for name in changes.unset_env:
        env.pop(name, None)
    wanted["env"] = env if env != current.env else None
    body = {key: value for key, value in wanted.items()
            if value is not None and (key not in current.raw or current.raw[key] != value)}
    if not body:
        raise UsageProblem("nothing to change: the endpoint already has these settings",
                           "pass what to change, e.g. --workers-max 3 (see --help)")
    return body


def update_endpoint(client: RunpodEndpoints, ref: str, changes: Changes, progress: Progress = quiet) -> UpdateResult:
    """PATCH the endpoint named by id or name, then compare the returned endpoint with the body.
    Raises EndpointNotFound, UsageProblem (nothing to change), ProviderError from the API."""
    current = find_endpoint(client, ref)
    body = update_body(current, changes)
    progress("update", f"changing {', '.join(sorted(body))} of endpoint {current.id}")
    updated = client.update_endpoint(current.id, body)
    return UpdateResult(current, updated, compare(body, updated.raw), "image" in body or "env" in body)


# -- list and diagnosis -----------------------------------------------------------------------

class QueueDiagnosis(NamedTuple):
    """Why a job waits IN_QUEUE: `cause` is one of the CAUSE_* words, `advice` what to do."""

    cause: str
    advice: str


CAUSE_SCALED_TO_ZERO = "max workers is 0"
CAUSE_CRASH_LOOP = "crash-looping workers"
CAUSE_NO_CAPACITY = "no GPU capacity"
CAUSE_COLD_START = "cold start"
CAUSE_NO_WORKER = "no worker allocated yet"
CAUSE_BUSY = "all workers busy"
CAUSE_IDLE = "workers idle but not taking the job"


def diagnose_queue(workers_view: WorkersView | dict, *, workers_max: int | None = None,
                   endpoint_id: str = "ENDPOINT") -> QueueDiagnosis:
    """Why jobs sit IN_QUEUE, from `GET /v2/serverless/{id}/workers` (a WorkersView or its raw
    JSON). Order as runpod-mcp's get-job-status (§3.4, §5 #2): an UNHEALTHY worker means a crash
    loop and NOT a capacity shortage; THROTTLED means hosts at capacity; INITIALIZING a cold
    start; no worker at all means capacity or the CUDA filter. `workers_max` 0 comes first (§3.3)."""
    view = workers_from_json(workers_view) if isinstance(workers_view, dict) else workers_view
    unhealthy = [w.id for w in view.workers if w.status == "UNHEALTHY"]
    if workers_max == 0:
        return QueueDiagnosis(CAUSE_SCALED_TO_ZERO, "no worker may start; Runpod sets max workers to 0 after 7 days "
                              f"without requests and it stays there: podtui endpoints update {endpoint_id} --workers-max 3")
    if view.count("unhealthy"):
        return QueueDiagnosis(CAUSE_CRASH_LOOP, f"{view.count('unhealthy')} worker(s) UNHEALTHY: the container fails "
                              "its health checks and restarts, this is not a capacity shortage; read why with "
                              f"podtui endpoints logs {endpoint_id} --worker {unhealthy[0] if unhealthy else 'WORKER'}")
    if view.count("throttled") and not (view.count("idle") or view.count("running") or view.count("initializing")):
        return QueueDiagnosis(CAUSE_NO_CAPACITY, f"{view.count('throttled')} worker(s) THROTTLED, waiting for a host "
                              f"with a free GPU: add pools (podtui endpoints update {endpoint_id} --gpu POOL), or wait")
    if view.count("initializing"):
        return QueueDiagnosis(CAUSE_COLD_START, f"{view.count('initializing')} worker(s) starting (image pull, MODEL "
                              "download and load): wait; FlashBoot, a network volume or --workers-min 1 shorten it, "
                              "and a start over 7 min marks the worker unhealthy (RUNPOD_INIT_TIMEOUT raises it)")
    if not view.count("total"):
        return QueueDiagnosis(CAUSE_NO_WORKER, "Runpod starts a worker once a job waits longer than the queue delay; "
                              "if none comes, its pools have no capacity or a CUDA filter excludes every host: "
                              f"add pools (podtui endpoints update {endpoint_id} --gpu POOL)")
    if view.count("running") and not view.count("idle"):
        return QueueDiagnosis(CAUSE_BUSY, "every worker is running a job: raise --workers-max, or MAX_CONCURRENCY "
                              "so each worker takes more jobs at once")
    return QueueDiagnosis(CAUSE_IDLE, "idle workers should take a job within seconds; if the job stays queued, "
                          f"the worker's job loop is not running: podtui endpoints logs {endpoint_id}")


def endpoint_warnings(endpoint: Endpoint, workers: WorkersView | None) -> list[str]:
    """What a user must know about an endpoint now: max workers 0 (§3.3), UNHEALTHY workers (a crash
    loop, §5 #2), workers still on an older release."""
    found = []
    if endpoint.workers_max == 0:
        found.append(f"max workers is 0, so no job will ever run: Runpod sets it to 0 after 7 days without "
                     f"requests and it stays; fix: podtui endpoints update {endpoint.id} --workers-max 3")
    if workers is not None and workers.count("unhealthy"):
        found.append(diagnose_queue(workers, endpoint_id=endpoint.id).advice)
    stale = [w.id for w in (workers.workers if workers else ()) if w.is_stale]
    if stale:
        found.append(f"{len(stale)} worker(s) still run an older release (rolling out as workers cycle)")
    return found


@dataclass
class EndpointStatus:
    """One row of `endpoints list`: the endpoint, its workers (None when they could not be read,
    then `problem` says why), warnings, and the list price (USD) of one worker-hour when known:
    the dearest of its pools' `price.serverless` × GPUs per worker."""

    endpoint: Endpoint
    workers: WorkersView | None
    warnings: list[str]
    price_per_worker_hr: float | None = None
    problem: PodtuiError | None = None

    def as_dict(self) -> dict:
        return {**self.endpoint.as_dict(), "workers_now": None if self.workers is None else self.workers.as_dict(),
                "warnings": self.warnings, "price_per_worker_hr": self.price_per_worker_hr,
                "problem": None if self.problem is None else {"title": self.problem.title, "fix": self.problem.fix}}


def list_endpoints(client: RunpodEndpoints) -> list[EndpointStatus]:
    """Every endpoint with its workers view and warnings; a workers view or catalog that cannot be
    read is noted per row, never fatal. Raises ProviderError when the list itself fails."""
    endpoints = client.list_endpoints()
    try:
        prices = {g.pool: g.price_per_hr for g in client.serverless_gpus() if g.pool and g.price_per_hr is not None}
    except PodtuiError:
        prices = {}
    rows = []
    for endpoint in endpoints:
        known = [prices[pool] for pool in endpoint.pools if pool in prices]
        price = max(known) if known else None   # workers may land on any listed pool: the dearest bounds it
        row = EndpointStatus(endpoint, None, [], None if price is None else round(price * endpoint.gpu_count, 4))
        try:
            row.workers = client.workers(endpoint.id)
        except PodtuiError as exc:
            row.problem = exc
        row.warnings = endpoint_warnings(endpoint, row.workers)
        rows.append(row)
    return rows
