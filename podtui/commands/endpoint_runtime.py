"""`podtui endpoints health | wake | test ENDPOINT`: a Serverless endpoint's runtime, as its users see it.

Loaded lazily by the `endpoints` group (podtui/commands/endpoints.py, ENDPOINT_VERBS). They talk
to the endpoint runtime (`https://api.runpod.ai/v2/{id}`, or PODTUI_RUNPOD_RUNTIME_URL); REST v2
only to find an endpoint by its name. Results go to stdout (text, or one JSON object with --json);
progress and waits go to stderr (JSON lines with --json), so scripts parse stdout while people
watch stderr.
"""

from __future__ import annotations

import json
import sys
import time

import click

from podtui.providers.runpod_runtime import Health, RuntimeClient
from podtui.services import endpoint_runtime as runtime

PROGRESS_EVERY_S = 2.0   # how often a wait in the queue is reported in words


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


def _emit(as_json: bool, kind: str, text: str, **data) -> None:
    """One progress line on stderr: `[hh:mm:ss] text`, or a JSON line with --json."""
    if as_json:
        click.echo(json.dumps({"event": kind, "ts": _stamp(), **data}), err=True)
    else:
        click.echo(f"[{_stamp()}] {text}", err=True)


def open_runtime(ref: str, as_json: bool) -> tuple[RuntimeClient, Health]:
    """The runtime client for the endpoint whose id or name is REF, and its /health (see
    runtime.open_endpoint); rate-limit waits and config warnings go to stderr."""
    warnings: list[str] = []
    opened = runtime.open_endpoint(ref, on_wait=lambda note: _emit(as_json, "wait", note, detail=note),
                                   warnings=warnings)
    for warning in warnings:
        _emit(as_json, "warning", warning, message=warning)
    return opened


@click.command()
@click.argument("endpoint_id", metavar="ENDPOINT")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def health(endpoint_id: str, as_json: bool) -> None:
    """Show whether ENDPOINT (an endpoint id or name) is warm, waking, cold or unhealthy, from its runtime /health.

    warm: a worker is idle or running (a request is answered now); waking: one is initializing
    (a cold start in progress); cold: none (the next request waits for a cold start); unhealthy:
    workers fail their health checks and none is ready (a crash loop: read the worker log).
    When jobs wait in the queue with no warm worker, the likely cause is named. Reading /health
    wakes nothing and costs nothing; `podtui endpoints wake ENDPOINT` starts a worker.
    """
    client, found = open_runtime(endpoint_id, as_json)
    client.close()
    state = runtime.classify(found, client.endpoint_id)
    if as_json:
        click.echo(json.dumps({"endpoint": client.endpoint_id, **state.as_dict()}))
        return
    click.echo(f"endpoint {client.endpoint_id}: {state.state}")
    workers, jobs = state.workers, state.jobs
    click.echo("  workers  " + ", ".join(f"{name} {workers.get(name, 0)}" for name in
                                         ("idle", "running", "initializing", "throttled", "unhealthy")))
    click.echo("  jobs     " + ", ".join(f"{label} {jobs.get(key, 0)}" for key, label in
                                         (("inQueue", "in queue"), ("inProgress", "in progress"),
                                          ("completed", "completed"), ("failed", "failed"))))
    if state.diagnosis:
        click.echo(f"  queue    {state.diagnosis[0]}: {state.diagnosis[1]}")


@click.command()
@click.argument("endpoint_id", metavar="ENDPOINT")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=600, show_default=True,
              help="Seconds to wait for a worker to answer (Runpod marks a worker unhealthy after 7 min of "
                   "starting).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object; progress as JSON lines on stderr.")
def wake(endpoint_id: str, timeout_s: float, as_json: bool) -> None:
    """Start a worker on ENDPOINT (an id or name) and wait until it answers; report the cold-start delay.

    Sends the cheapest real job there is: the worker's model list (input
    {"openai_route": "/v1/models"}, answered without generating; ttl 5 min, execution timeout
    30 s), then polls its status. The worker stays warm for the endpoint's idle timeout
    afterwards, billed as worker time; `podtui serve ENDPOINT` keeps it warm while you chat.
    Exit 1 when no worker answered within --timeout (the wake job is then cancelled).
    """
    client, _ = open_runtime(endpoint_id, as_json)
    endpoint_id = client.endpoint_id
    last = [time.monotonic()]   # words every PROGRESS_EVERY_S while waiting; JSON lines at every poll

    def progress(kind: str, data: dict) -> None:
        if kind == "state":
            _emit(as_json, "state", f"endpoint {endpoint_id} is {data['state']}", **data)
        elif kind == "queued":
            _emit(as_json, "queued", f"sent the wake job {data['job_id']}", **data)
        elif kind == "waiting":
            endpoint = data.get("endpoint")
            if not as_json and time.monotonic() - last[0] < PROGRESS_EVERY_S and not endpoint:
                return
            last[0] = time.monotonic()
            why = ""
            if endpoint and endpoint.get("diagnosis"):
                why = f" — {endpoint['diagnosis']['cause']}: {endpoint['diagnosis']['advice']}"
            _emit(as_json, "waiting", f"waiting for a worker (cold start) … {data['elapsed_s']:.0f} s{why}", **data)
        elif kind == "running":
            _emit(as_json, "running", "a worker took the job", **data)

    try:
        result = runtime.wake(client, timeout_s=timeout_s, on_progress=progress)
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps({"endpoint": endpoint_id, "state": runtime.WARM, **result.as_dict()}))
        return
    delay = f"{result.delay_s:.1f} s" if result.delay_s is not None else "unknown"
    how = (f"cold start: a worker started and answered after a queue delay of {delay}" if result.cold
           else f"already warm (queue delay {delay})")
    click.echo(f"endpoint {endpoint_id} is warm: {how}; podtui waited {result.total_s:.1f} s")
    if result.models:
        click.echo(f"  models   {', '.join(result.models)}")


@click.command(name="test")
@click.argument("endpoint_id", metavar="ENDPOINT")
@click.option("--prompt", default="Say hello in five words.", show_default=True, help="The user message.")
@click.option("--model", default=None, help="Model name to ask for (default: the first the endpoint lists).")
@click.option("--max-tokens", type=click.IntRange(1, 8192), default=64, show_default=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=600, show_default=True,
              help="Seconds to wait for the answer (a cold start included).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object instead of the tokens.")
def test_command(endpoint_id: str, prompt: str, model: str | None, max_tokens: int, timeout_s: float,
                 as_json: bool) -> None:
    """Stream a chat completion from ENDPOINT (an id or name) through its OpenAI route and time it.

    The request goes to /openai/v1/chat/completions with stream=true, as a chat client would send
    it (base URL https://api.runpod.ai/v2/<id>/openai/v1, the Runpod key as bearer). Tokens are
    printed as they arrive, then the time to first token and tokens per second. A cold endpoint
    answers only after a worker starts: run `podtui endpoints wake ENDPOINT` first to time a warm one.
    """
    client, _ = open_runtime(endpoint_id, as_json)
    endpoint_id = client.endpoint_id
    if not as_json:
        _emit(False, "sent", f"streaming a chat completion from endpoint {endpoint_id}"
              + (f" (model {model})" if model else " (its first model, from /v1/models)"))

    def token(text: str) -> None:
        if not as_json:
            sys.stdout.write(text)
            sys.stdout.flush()

    try:
        result = runtime.chat_test(client, prompt=prompt, model=model, max_tokens=max_tokens,
                                   timeout_s=timeout_s, on_token=token)
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps({"endpoint": endpoint_id, **result.as_dict()}))
        return
    click.echo()
    first = f"{result.first_token_s:.3f} s" if result.first_token_s is not None else "no tokens"
    rate = f"{result.tokens_per_s:.1f} tokens/s" if result.tokens_per_s else "rate unknown"
    models = f" (after {result.models_s:.3f} s for /v1/models)" if result.models_s is not None else ""
    click.echo(f"model {result.model}{models}: first token {first}, {result.tokens} tokens in "
               f"{result.total_s:.3f} s, {rate}, finish {result.finish_reason or '-'}")


COMMANDS = [health, wake, test_command]
