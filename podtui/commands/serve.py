"""`podtui serve ENDPOINT`: a local OpenAI-compatible URL for a Runpod Serverless endpoint, until Ctrl-C.

How it works and why it is safe: podtui/services/serve.py (the proxy) and keep_warm.py (the
watch: state, wake, keep-alive, cost). The "serving" summary goes to stdout (one JSON object
with --json); state changes, requests and warnings go to stderr (JSON lines with --json).
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time

import click

from podtui import paths
from podtui.commands.endpoint_runtime import open_runtime
from podtui.errors import PodtuiError, UsageProblem
from podtui.services.keep_warm import KeepWarm, endpoint_costs
from podtui.services.serve import LOCAL_KEY_FILE, Proxy, check_loopback, local_api_key

DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?", re.IGNORECASE)
UNIT_S = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text: str, option: str) -> float:
    """Seconds in `90`, `90s`, `10m`, `1.5h`; UsageProblem (exit 2) for anything else."""
    match = DURATION.fullmatch(text.strip())
    if not match:
        raise UsageProblem(f"{option} {text!r} is not a duration", f"write it as e.g. {option} 90s, 10m or 1h")
    return float(match.group(1)) * UNIT_S[(match.group(2) or "").lower() or None]


def _money(value: float | None) -> str:
    return f"${value:.4f}" if value is not None else "price unknown"


def _render(kind: str, data: dict) -> str:
    if kind == "state":
        text = f"endpoint is {data['to']}" + (f" (was {data['from']})" if data["from"] != "unknown" else "")
        if data.get("source"):
            text += f": {data['source']}"
        diagnosis = data.get("diagnosis")
        return text + (f" — queue: {diagnosis['cause']}: {diagnosis['advice']}" if diagnosis else "")
    if kind == "wake_sent":
        return f"sent the wake job {data['job_id']} (a worker starts if none is warm)"
    if kind == "woken":
        delay = f"{data['delay_s']:.1f} s" if data.get("delay_s") is not None else "unknown"
        return f"a worker answered the wake job (queue delay {delay}, cold start included)"
    if kind == "keep_warm" and data["on"]:
        price = data.get("price_per_hr")
        cost = (f"≈ {_money(data['max_cost_per_pause_usd'])} at ${price:.2f}/hr per worker" if price is not None
                else f"{data.get('note') or 'price unknown'}")
        return (f"keep-alive on ({data['reason']}): a no-op job every {data['interval_s']:g} s while no request "
                f"runs; stops after {data['idle_limit_s']:g} s without requests; costs up to "
                f"{data['max_worker_s_per_pause']:g} worker-seconds per pause ({cost})")
    if kind == "keep_warm":
        return (f"keep-alive off ({data['reason']}): {data['pings']} ping(s) kept a worker up "
                f"{data['kept_warm_s']:g} worker-seconds ({_money(data.get('cost_usd'))})")
    if kind == "ping":
        return f"keep-alive ping {data['job_id']} (worker kept up {data['kept_warm_s']:g} s so far)"
    if kind == "request":
        status = data["status"] or "no answer"
        return f"{data['method']} {data['path']} → {status} in {data['seconds']:.3f} s"
    if kind == "retry":
        return (f"the endpoint refused {data['path']} ({data['reason']}); retry {data['attempt']} of {data['of']} "
                f"in {data['wait_s']:g} s")
    if kind == "stopped":
        return (f"stopped after {data['requests']} request(s) ({data['retried']} retried); keep-alive: "
                f"{data['pings']} ping(s), {data['kept_warm_s']:g} worker-seconds ({_money(data.get('cost_usd'))})")
    if kind == "warning":
        return f"warning: {data['message']}" + (f"; fix: {data['fix']}" if data.get("fix") else "")
    return f"{kind}: {json.dumps(data)}"


def _printer(as_json: bool):
    lock = threading.Lock()

    def emit(kind: str, data: dict) -> None:
        stamp = time.strftime("%H:%M:%S")
        line = json.dumps({"event": kind, "ts": stamp, **data}) if as_json else f"[{stamp}] {_render(kind, data)}"
        with lock:
            click.echo(line, err=True)
    return emit


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@click.command()
@click.argument("endpoint_id", metavar="ENDPOINT")
@click.option("-p", "--port", type=click.IntRange(0, 65535), default=5002, show_default=True,
              help="Local port (0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Loopback address to listen on (127.0.0.1, ::1, localhost); any other is refused.")
@click.option("--keep-warm/--no-keep-warm", default=True, show_default=True,
              help="Keep one worker warm with a no-op job every idle-timeout-minus-margin while requests flow.")
@click.option("--idle-limit", default="10m", show_default=True,
              help="Stop keep-alive after this long without requests (90s, 10m, 1h).")
@click.option("--ping-every", default=None,
              help="Seconds between keep-alive jobs (default: the endpoint's idle timeout minus a margin).")
@click.option("--health-every", default="5s", show_default=True, help="How often the endpoint's state is read.")
@click.option("--retries", type=click.IntRange(0, 10), default=3, show_default=True,
              help="Times a request the endpoint refuses (429, 502, 503, 504, unreachable) is sent again.")
@click.option("--retry-wait", default="5s", show_default=True, help="Wait between those retries.")
@click.option("--no-api-key", is_flag=True,
              help="Let local clients in without the local key (any web page open in your browser could then "
                   "spend your endpoint; cross-origin requests stay refused).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object when serving; events as JSON lines.")
def serve(endpoint_id: str, port: int, host: str, keep_warm: bool, idle_limit: str, ping_every: str | None,
          health_every: str, retries: int, retry_wait: str, no_api_key: bool, as_json: bool) -> None:
    """Serve Runpod Serverless ENDPOINT (an id or name) as an OpenAI-compatible URL on this machine.

    Point a chat client or browser UI at the printed base URL (http://127.0.0.1:5002/v1) with the
    printed LOCAL key; podtui forwards /v1/* to the endpoint's /openai/v1/* with your Runpod key
    added (the client never holds it) and relays streamed answers as they come. At start it sends
    a wake job so a worker starts before your first request; while requests flow it keeps one
    worker warm (each keep-alive job is billed as worker time: the cost is printed), and stops
    after --idle-limit without requests. Requests a cold endpoint refuses are retried. State
    changes (cold → waking → warm, keep-alive on/off) are printed. Ctrl-C stops it.
    """
    check_loopback(host)   # before anything: never listen on a network
    idle_limit_s = parse_duration(idle_limit, "--idle-limit")
    ping_every_s = parse_duration(ping_every, "--ping-every") if ping_every is not None else None
    poll_s = max(0.05, parse_duration(health_every, "--health-every"))
    retry_wait_s = parse_duration(retry_wait, "--retry-wait")
    key_path = paths.state_dir() / LOCAL_KEY_FILE
    try:
        local_key = None if no_api_key else local_api_key(key_path)
    except OSError as exc:
        raise PodtuiError(f"cannot keep serve's local key in {key_path}: {exc.strerror or exc}",
                          "check the state dir's permissions (`podtui locate`), or pass --no-api-key") from None
    emit = _printer(as_json)
    client, _ = open_runtime(endpoint_id, as_json)   # checks the key and the endpoint before listening
    endpoint_id = client.endpoint_id
    watch = KeepWarm(client, keep_warm=keep_warm, idle_limit_s=idle_limit_s, ping_every_s=ping_every_s,
                     poll_s=poll_s, emit=emit, costs=lambda: endpoint_costs(endpoint_id))
    proxy = Proxy(client, host, port, local_key=local_key, retries=retries, retry_wait_s=retry_wait_s, emit=emit,
                  on_start=watch.request_started, on_end=watch.request_ended)
    try:
        proxy.bind()
    except OSError as exc:
        client.close()
        raise PodtuiError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                          "another program uses that port: pick another with -p PORT") from None
    signal.signal(signal.SIGTERM, _interrupt)   # SIGTERM ends it like Ctrl-C: cleanly, exit 0
    try:
        _report_up(endpoint_id, proxy, local_key, key_path, client.base_url, as_json)
        proxy.start()
        watch.start()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        proxy.close()
        watch.stop()
        client.close()
        emit("stopped", {"requests": proxy.requests, "retried": proxy.retried, **watch.summary()})


def _report_up(endpoint_id: str, proxy: Proxy, local_key: str | None, key_path, upstream: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"state": "serving", "endpoint": endpoint_id, "base_url": proxy.base_url,
                               "api_key": local_key, "api_key_file": str(key_path) if local_key else None,
                               "upstream": f"{upstream}/openai/v1"}))
    else:
        click.echo(f"serving endpoint {endpoint_id}")
        click.echo(f"  base URL  {proxy.base_url}")
        click.echo(f"  API key   {local_key} (local to podtui serve; not your Runpod key)" if local_key else
                   "  API key   none (--no-api-key: any local program or web page may use it)")
        click.echo(f"  upstream  {upstream}/openai/v1 (your Runpod key is added there)")
        click.echo("Ctrl-C to stop.")
    sys.stdout.flush()


COMMANDS = [serve]
