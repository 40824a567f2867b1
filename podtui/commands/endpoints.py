"""`podtui endpoints …`: Runpod Serverless endpoints that run podtui's image as a worker
(MODE_TO_RUN=serverless) and serve its MODEL through Runpod's OpenAI-compatible route.

The group loads its verbs lazily, like podtui.cli's VERBS: list/create/update/delete/logs live
here (REST v2 control plane), health/wake/test in podtui.commands.endpoint_runtime (the runtime
API). A verb whose module is not installed is simply not listed.

Results go to stdout (text, or one JSON object with --json); progress, notes and warnings go to
stderr (JSON lines with --json). The Runpod API key and HF_TOKEN are never printed.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

import click

from podtui.display import format_price
from podtui.errors import UsageProblem
from podtui.providers.base import ProviderError
from podtui.providers.runpod_endpoints import Endpoint, EndpointSpec, WorkersView, openai_base_url
from podtui.services import endpoints as svc
from podtui.services.endpoint_logs import log_lines
from podtui.services.inputs import ctx_option, hf_token_option, model_problem

ENDPOINT_VERBS = {"list": "endpoints", "create": "endpoints", "update": "endpoints", "delete": "endpoints",
                  "logs": "endpoints", "health": "endpoint_runtime", "wake": "endpoint_runtime",
                  "test": "endpoint_runtime"}


class EndpointsGroup(click.Group):
    """Loads each verb's module (ENDPOINT_VERBS) only when that verb runs or help lists it."""

    @staticmethod
    def _module(name: str):
        if name not in ENDPOINT_VERBS:
            return None
        module_name = f"podtui.commands.{ENDPOINT_VERBS[name]}"
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None   # that verb is not built (yet): leave it out
            raise

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in ENDPOINT_VERBS if self.get_command(ctx, name) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = self._module(name)
        if module is None:
            return None
        commands = getattr(module, "SUBCOMMANDS", None) or module.COMMANDS
        return next((command for command in commands if command.name == name), None)


def _say(message: str) -> None:
    click.echo(message, err=True)


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


def _progress(as_json: bool):
    def report(phase: str, detail: str) -> None:
        if as_json:
            click.echo(json.dumps({"event": phase, "ts": _stamp(), "detail": detail}), err=True)
        else:
            _say(f"[{_stamp()}] {detail}")
    return report


def _warn(as_json: bool, text: str, event: str = "warning") -> None:
    _say(json.dumps({"event": event, "detail": text}) if as_json else f"{event}: {text}")


def _client():
    warnings: list[str] = []
    client = svc.open_endpoints(on_wait=lambda note: _say(f"[{_stamp()}] {note}"), warnings=warnings)
    for warning in warnings:
        _say(warning)
    return client


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _gpu(endpoint: Endpoint) -> str:
    if endpoint.pools:
        return f"{endpoint.gpu_count}x {'/'.join(endpoint.pools)}"
    return "CPU " + "/".join(endpoint.cpu) if endpoint.cpu else "-"


def _now(workers: WorkersView | None) -> str:
    if workers is None:
        return "?"
    counts = [f"{workers.count(s)} {s}" for s in ("idle", "running", "initializing", "throttled", "unhealthy")
              if workers.count(s)]
    return ", ".join(counts) if counts else "cold (no workers)"


def _settings(e: Endpoint) -> str:
    idle = f", idle timeout {e.idle_timeout_s} s" if e.idle_timeout_s is not None else ""
    scaling = f"queue delay {e.scaling_value:g} s" if e.scaling == "QUEUE_DELAY" else f"{e.scaling} {e.scaling_value:g}"
    flashboot = {"OFF": "off", "FLASHBOOT": "on", "PRIORITY_FLASHBOOT": "priority"}.get(e.flashboot, e.flashboot)
    return (f"{_gpu(e)}, workers {e.workers_min}–{e.workers_max}{idle}, execution timeout "
            f"{e.timeout_ms / 1000:g} s, FlashBoot {flashboot}, {scaling}")


def _changed(before: Endpoint, after: Endpoint) -> list[str]:
    """`field old → new` for each setting that differs (secret env values stay hidden)."""
    def flat(data: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in data.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            elif key not in ("openai_base_url", "created_at", "model"):   # model: env.MODEL
                out[f"{prefix}{key}"] = value
        return out
    old, new = flat(before.as_dict()), flat(after.as_dict())
    return [f"{key} {old.get(key, '-')} → {new.get(key, '-')}" for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key)]


def _check_model(model: str, network_volume: str | None) -> None:
    if model and not network_volume and (problem := model_problem(model)):
        # With a network volume MODEL may name a file already on it; the worker's agent checks that.
        raise UsageProblem(f"--model: {problem}", "fix MODEL before an endpoint is created")


@click.group(cls=EndpointsGroup)
def endpoints() -> None:
    """Runpod Serverless endpoints running podtui's image as a worker (MODE_TO_RUN=serverless).

    Workers start on demand, bill per second while they run and stop after the idle timeout;
    the endpoint serves MODEL at https://api.runpod.ai/v2/ID/openai/v1 with your Runpod API key
    as the bearer token. ENDPOINT is an endpoint id or name.
    """


@click.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def list_(as_json: bool) -> None:
    """Each endpoint with its GPU pools, workers min–max, idle timeout, its workers now (idle,
    running, initializing, throttled, unhealthy) and warnings: max workers 0 (Runpod's 7-day idle
    scale-down) or UNHEALTHY workers (a crash loop)."""
    client = _client()
    rows = svc.list_endpoints(client)
    if as_json:
        click.echo(json.dumps({"endpoints": [row.as_dict() for row in rows]}))
    elif not rows:
        click.echo("no serverless endpoints (create one with `podtui endpoints create NAME --model … --gpu POOL`)")
    else:
        table = [["ID", "NAME", "GPU", "WORKERS", "IDLE", "NOW", "$/HR/WORKER", "MODEL"]]
        for row in rows:
            e = row.endpoint
            table.append([e.id, e.name or "-", _gpu(e), f"{e.workers_min}-{e.workers_max}",
                          "-" if e.idle_timeout_s is None else f"{e.idle_timeout_s}s", _now(row.workers),
                          format_price(row.price_per_worker_hr, "-"), e.env.get("MODEL", "") or "-"])
        click.echo(_table(table))
    for row in rows:
        for warning in row.warnings:
            _warn(as_json, f"{row.endpoint.id} ({row.endpoint.name}): {warning}")
        if row.problem is not None:
            _warn(as_json, f"{row.endpoint.id}: workers unknown: {row.problem.title}")


@click.command()
@click.argument("name")
@click.option("--model", required=True, help="MODEL: HF URL, org/repo, org/repo:QUANT, org/repo/file.gguf, or a "
              "file on the network volume.")
@click.option("--gpu", "gpus", multiple=True, metavar="POOL_OR_TYPE",
              help="Serverless GPU pool (e.g. ADA_24) or a GPU type id (translated to its pool); repeat for "
                   "fallbacks in priority order. Without it podtui lists the pools.")
@click.option("--gpu-count", type=click.IntRange(1, 8), default=1, show_default=True, help="GPUs per worker.")
@click.option("--workers-max", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--workers-min", type=click.IntRange(0, 100), default=0, show_default=True,
              help="Active workers: always on, billed all the time.")
@click.option("--idle-timeout", type=click.IntRange(1, 3600), default=120, show_default=True, metavar="SECONDS",
              help="A worker stays (billed) this long after its last job.")
@click.option("--execution-timeout", type=click.IntRange(5, 7 * 86400), default=600, show_default=True,
              metavar="SECONDS", help="Longest one request may run.")
@click.option("--flashboot/--no-flashboot", default=True, show_default=True, help="Faster cold starts.")
@click.option("--queue-delay", type=click.FloatRange(min=0.5), default=15, show_default=True, metavar="SECONDS",
              help="Start another worker when a request waited this long.")
@click.option("--network-volume", default=None, metavar="VOLUME_ID",
              help="Models live on it at /runpod-volume (BASE_PATH): downloaded once, not per worker.")
@click.option("--max-concurrency", type=click.IntRange(1, 256), default=None,
              help="MAX_CONCURRENCY: jobs one worker runs at once (the engine's parallel slots).")
@click.option("--ctx", default=None, help="CTX: context length, or 'auto'.")
@click.option("--engine", type=click.Choice(["llama-server", "koboldcpp"]), default=None)
@click.option("--disk", "disk_gb", type=click.IntRange(5, 2000), default=50, show_default=True, metavar="GB",
              help="Container disk per worker (the image plus MODEL when there is no network volume).")
@click.option("--env", "extra_env", multiple=True, metavar="NAME=VALUE", help="More worker environment; repeatable.")
@click.option("--with-hf-token", "hf_token", is_flag=True,
              help="Pass HF_TOKEN from this environment to the workers (never shown, never taken from the "
              "command line); off by default, as for `podtui launch`.")
@click.option("--no-hf-token", "no_hf_token", is_flag=True, hidden=True,
              help="The default now; kept so that older scripts still run.")
@click.option("--image", default=None, help="Worker image (default: PODTUI_IMAGE or [runpod] image in the config, "
              "as `podtui launch`).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object; progress as JSON lines on stderr.")
def create(name: str, model: str, gpus: tuple[str, ...], gpu_count: int, workers_max: int, workers_min: int,
           idle_timeout: int, execution_timeout: int, flashboot: bool, queue_delay: float,
           network_volume: str | None, max_concurrency: int | None, ctx: str | None, engine: str | None,
           disk_gb: int, extra_env: tuple[str, ...], hf_token: bool, no_hf_token: bool, image: str | None,
           as_json: bool) -> None:
    """Create endpoint NAME serving MODEL (seed 002's settings are the defaults), read it back and
    say where Runpod made it differently; exit 1 then. Prints the OpenAI base URL."""
    _check_model(model, network_volume)
    if workers_min > workers_max:
        raise UsageProblem(f"--workers-min {workers_min} is above --workers-max {workers_max}", "lower --workers-min")
    ctx_value = ctx_option(ctx)
    if hf_token and no_hf_token:
        raise UsageProblem("--with-hf-token and --no-hf-token contradict each other", "give one of them")
    token = hf_token_option(hf_token)
    env = svc.endpoint_env(model, ctx=None if ctx_value is None else str(ctx_value), engine=engine,
                           max_concurrency=max_concurrency, network_volume=network_volume, hf_token=token or None,
                           extra=svc.parse_env(extra_env))
    client = _client()
    progress = _progress(as_json)
    chosen_image = svc.pick_image(client, image)
    pools, notes = svc.resolve_pools(gpus, client.serverless_gpus())
    spec = EndpointSpec(name=name, image=chosen_image, pools=tuple(pools), gpu_count=gpu_count,
                        workers_min=workers_min, workers_max=workers_max, idle_timeout_s=idle_timeout,
                        execution_timeout_s=execution_timeout, flashboot=flashboot, queue_delay_s=queue_delay,
                        network_volume=network_volume, disk_gb=disk_gb, env=env)
    result = svc.create_endpoint(client, spec, progress)
    result.notes.extend(notes)
    if token:
        result.notes.append("HF_TOKEN from this environment was passed to the workers (hidden)")
    e = result.endpoint
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        click.echo(f"endpoint {e.id} ({e.name}) created: {_settings(e)}")
        click.echo(f"  model      {e.env.get('MODEL', '-')}")
        click.echo(f"  image      {e.image}")
        click.echo(f"  OpenAI     {openai_base_url(e.id)}  (bearer: your Runpod API key)")
        click.echo(f"  next       podtui serve {e.id}           a local OpenAI endpoint on 127.0.0.1 that adds the "
                   "key, wakes the endpoint and keeps a worker warm while you chat")
        click.echo(f"             podtui endpoints test {e.id}  streams one chat completion through it")
        for note in result.notes:
            _say(f"note: {note}")
        _say("note: the first request waits for a cold start (image pull, MODEL download and load); a start "
             "over 7 min marks the worker unhealthy unless --env RUNPOD_INIT_TIMEOUT=SECONDS raises it")
    if result.mismatches:
        raise ProviderError(f"endpoint {e.id} was created, but Runpod holds it differently from what was asked: "
                            + "; ".join(map(str, result.mismatches)),
                            f"check it in the Runpod console, change it with `podtui endpoints update {e.id} …` "
                            f"or remove it with `podtui endpoints delete {e.id}`")


@click.command()
@click.argument("endpoint")
@click.option("--name", default=None, help="A new name.")
@click.option("--workers-max", type=click.IntRange(0, 100), default=None)
@click.option("--workers-min", type=click.IntRange(0, 100), default=None)
@click.option("--idle-timeout", type=click.IntRange(1, 3600), default=None, metavar="SECONDS")
@click.option("--execution-timeout", type=click.IntRange(5, 7 * 86400), default=None, metavar="SECONDS")
@click.option("--flashboot/--no-flashboot", default=None)
@click.option("--queue-delay", type=click.FloatRange(min=0.5), default=None, metavar="SECONDS")
@click.option("--gpu", "gpus", multiple=True, metavar="POOL_OR_TYPE",
              help="Replace the GPU pools (this also clears any excluded GPU types).")
@click.option("--image", default=None, help="A new worker image (rolls out as workers cycle).")
@click.option("--model", default=None, help="A new MODEL (rolls out as workers cycle).")
@click.option("--ctx", default=None, help="A new CTX (number or auto).")
@click.option("--engine", type=click.Choice(["llama-server", "koboldcpp"]), default=None)
@click.option("--max-concurrency", type=click.IntRange(1, 256), default=None)
@click.option("--env", "extra_env", multiple=True, metavar="NAME=VALUE", help="Set worker env; repeatable.")
@click.option("--unset-env", multiple=True, metavar="NAME", help="Remove a worker env variable; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def update(endpoint: str, name: str | None, workers_max: int | None, workers_min: int | None,
           idle_timeout: int | None, execution_timeout: int | None, flashboot: bool | None,
           queue_delay: float | None, gpus: tuple[str, ...], image: str | None, model: str | None,
           ctx: str | None, engine: str | None, max_concurrency: int | None, extra_env: tuple[str, ...],
           unset_env: tuple[str, ...], as_json: bool) -> None:
    """Change ENDPOINT's scaling, timeouts, FlashBoot, GPU pools, image or env. Workers, scaling and
    timeouts apply promptly; image and env changes roll out as workers cycle."""
    if model:
        _check_model(model, None)
    set_env = svc.parse_env(extra_env)
    ctx_value = ctx_option(ctx)
    for key, value in (("MODEL", model), ("CTX", None if ctx_value is None else str(ctx_value)), ("ENGINE", engine),
                       ("MAX_CONCURRENCY", None if max_concurrency is None else str(max_concurrency))):
        if value is not None:
            set_env[key] = value
    if svc.MODE_ENV in unset_env:
        raise UsageProblem(f"--unset-env {svc.MODE_ENV} would make the workers boot as pods", "leave it set")
    client = _client()
    pools = svc.resolve_pools(gpus, client.serverless_gpus())[0] if gpus else None
    changes = svc.Changes(name=name, workers_min=workers_min, workers_max=workers_max, idle_timeout_s=idle_timeout,
                          execution_timeout_s=execution_timeout, flashboot=flashboot, queue_delay_s=queue_delay,
                          pools=pools, image=image, set_env=set_env, unset_env=unset_env)
    result = svc.update_endpoint(client, endpoint, changes, _progress(as_json))
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        click.echo(f"endpoint {result.endpoint.id} ({result.endpoint.name}) updated: {_settings(result.endpoint)}")
        for change in _changed(result.before, result.endpoint):
            click.echo(f"  {change}")
    if result.rolling:
        _warn(as_json, svc.ROLLOUT_NOTE, "note")
    if result.mismatches:
        raise ProviderError(f"Runpod holds endpoint {result.endpoint.id} differently from what was asked: "
                            + "; ".join(map(str, result.mismatches)), "check it in the Runpod console")


@click.command()
@click.argument("endpoint")
@click.option("--yes", is_flag=True, help="Do not ask for the endpoint's name.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def delete(endpoint: str, yes: bool, as_json: bool) -> None:
    """Delete ENDPOINT for good. Runpod also deletes the template bound to it, terminates its
    workers and cancels its queued and running jobs. Asks you to type its name unless --yes."""
    client = _client()
    found = svc.find_endpoint(client, endpoint)
    if not yes:
        _say(f"Endpoint {found.id} ({found.name}, {_gpu(found)}) will be deleted with the template bound to it; "
             "its workers are terminated and its queued and running jobs cancelled.")
        try:
            typed = click.prompt(f"Type its name ({found.name}) to delete it", default="", show_default=False,
                                 err=True)
        except click.Abort:
            typed = ""
        if typed.strip() != found.name:
            raise UsageProblem(f"endpoint {found.id} was not deleted", f"type its name exactly ({found.name}), "
                               "or pass --yes")
    client.delete_endpoint(found.id)
    if as_json:
        click.echo(json.dumps({"id": found.id, "name": found.name, "deleted": True, "bound_template_deleted": True}))
    else:
        click.echo(f"endpoint {found.id} ({found.name}) deleted, with the template bound to it")
    sys.stdout.flush()


@click.command()
@click.argument("endpoint")
@click.option("--worker", default=None, help="Only this worker (default: every active worker).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C stops); new workers join in.")
@click.option("--tail", type=click.IntRange(0, 5000), default=100, show_default=True,
              help="Lines of history per worker first.")
@click.option("--source", type=click.Choice(["container", "system"]), default=None,
              help="Only the container's output or only Runpod's system lines (default: both).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: worker, ts, source, line.")
def logs(endpoint: str, worker: str | None, follow: bool, tail: int, source: str | None, as_json: bool) -> None:
    """Print ENDPOINT's workers' logs (Server-Sent Events); a dropped connection resumes after the
    last line seen (Last-Event-ID). Runpod keeps logs only for active workers."""
    client = _client()
    found = svc.find_endpoint(client, endpoint)
    lines = log_lines(client, found.id, worker, follow=follow, tail=tail, source=source,
                      note=lambda text: _warn(as_json, text, "note"),
                      rescan_s=float(os.environ.get("PODTUI_POLL_S") or 15.0))
    try:
        for worker_id, line in lines:
            if as_json:
                click.echo(json.dumps({"worker": worker_id, "ts": line.ts, "source": line.source, "line": line.line}))
            else:
                click.echo(f"{worker_id}  {line.ts + '  ' if line.ts else ''}{line.line}")
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass   # Ctrl-C ends --follow: a clean exit
    finally:
        lines.close()   # stops the followers


COMMANDS = [endpoints]
SUBCOMMANDS = [list_, create, update, delete, logs]
