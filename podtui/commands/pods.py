"""Pod lifecycle verbs: pods, launch, stop, resume, terminate.

`pods` lists every provider (Runpod, added SSH hosts, the local pod); launch creates Runpod pods;
stop/resume/terminate go to the provider that owns the pod named.

Results go to stdout (a table, or one JSON object with --json); progress, waits and warnings go
to stderr, so scripts can parse stdout while people watch stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from podtui.image_ref import default_image_text

from podtui.display import format_price, format_uptime
from podtui.errors import UsageProblem
from podtui.providers.base import ENGINE_KEY_NAMES, SECRET_ENV_NAMES, Pod, PodSpec, Provider
from podtui.providers.runpod import RunpodProvider
from podtui.services.inputs import ctx_option, hf_token_option, model_problem
from podtui.services.pods import PodService
from podtui.services.providers import find_anywhere, list_everywhere, open_providers


def _say(message: str) -> None:
    click.echo(message, err=True)


def _progress(as_json: bool):
    def report(phase: str, detail: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        if as_json:
            click.echo(json.dumps({"event": phase, "ts": stamp, "detail": detail}), err=True)
        else:
            _say(f"[{stamp}] {detail}")
    return report


def open_provider() -> RunpodProvider:
    warnings: list[str] = []
    provider = RunpodProvider.from_environment(on_wait=lambda note: _say(f"[{time.strftime('%H:%M:%S')}] {note}"),
                                               warnings=warnings)
    for warning in warnings:
        _say(warning)
    return provider


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def pods(as_json: bool) -> None:
    """List your pods everywhere (Runpod, added SSH hosts, this machine) with their $/hr, and
    the total of the running ones. Exit 1 when a configured provider could not be listed."""
    warnings: list[str] = []
    opened = open_providers(on_wait=lambda note: _say(f"[{time.strftime('%H:%M:%S')}] {note}"),
                            warnings=warnings)
    for warning in warnings:
        _say(warning)
    for note in opened.notes:
        _say(f"note: {note}")
    listing = list_everywhere(opened.providers)
    problems = list(opened.problems) + [exc for _, exc in listing.problems]
    listed = listing.pods
    running = [(provider, pod) for provider, pod in listed if pod.running]
    total = round(sum(provider.cost_per_hr(pod) for provider, pod in running), 4)
    if as_json:
        click.echo(json.dumps({"pods": [{**pod.as_dict(), "cost_per_hr": provider.cost_per_hr(pod)}
                                        for provider, pod in listed],
                               "running": len(running), "running_cost_per_hr": total,
                               "notes": opened.notes,
                               "problems": [{"title": e.title, "fix": e.fix} for e in problems]}))
    elif not listed:
        click.echo("no pods (start one with `podtui launch --gpu … --model …`)")
    else:
        rows = [["PROVIDER", "ID", "NAME", "STATUS", "GPU", "$/HR", "UPTIME", "MODEL", "SSH", "DETAIL"]]
        for provider, pod in listed:
            gpu = f"{pod.gpu_count}x {pod.gpu}" if pod.gpu else "-"
            ssh = f"{pod.ssh.host}:{pod.ssh.port}" if pod.ssh else "-"
            rows.append([provider.name, pod.id, pod.name or "-", pod.status, gpu,
                         format_price(provider.cost_per_hr(pod), "-"), format_uptime(pod.uptime_s, "-"),
                         pod.env.get("MODEL", "") or "-", ssh, _short(pod.detail) or "-"])
        click.echo(_table(rows))
        click.echo(f"running: {len(running)} pod{'s' if len(running) != 1 else ''}, ${total:.2f}/hr")
    if problems:
        raise problems[0]  # printed as error/fix, exit 1; the pods that could be listed are above


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _env_pairs(values: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name or not name.replace("_", "").isalnum():
            raise UsageProblem(f"--env {value!r} is not NAME=VALUE", "write it as --env NAME=VALUE")
        engine_key_opt_out = name in ENGINE_KEY_NAMES and text.strip().lower() == "none"   # no secret
        if name in SECRET_ENV_NAMES and not engine_key_opt_out:
            # a secret on the command line lands in ps and shell history
            raise UsageProblem(f"--env {name}=… would put a secret on the command line",
                               "export HF_TOKEN in your shell and pass --with-hf-token"
                               if "HF" in name or "HUGGING" in name else
                               "let the pod's agent generate the engine's key (podtui shows it beside the "
                               f"base URL), or pass --env {name}=none to run the engine without one"
                               if name in ENGINE_KEY_NAMES else
                               "use --jupyter: the pod generates Jupyter's token and `podtui tunnel POD --jupyter` "
                               "prints the URL with it" if name == "JUPYTER_PASSWORD" else
                               f"do not pass {name} to a pod by hand")
        env[name] = text
    return env


@click.command()
@click.option("--gpu", required=True, metavar="GPU_ID", help="Runpod GPU type id, e.g. 'NVIDIA GeForce RTX 4090'.")
@click.option("--model", default="", help="MODEL: HF URL, org/repo, org/repo:QUANT, org/repo/file.gguf or a pod path.")
@click.option("--ctx", default=None, help="CTX: context length, or 'auto'.")
@click.option("--engine", type=click.Choice(["llama-server", "koboldcpp"]), default=None)
@click.option("--args", "engine_args", default=None, help="ARGS: extra engine arguments.")
@click.option("--port", type=click.IntRange(1, 65535), default=5002, show_default=True, help="Engine port (PORT).")
@click.option("--name", default="podtui", show_default=True)
@click.option("--gpu-count", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--volume-gb", type=click.IntRange(10, 100000), default=50, show_default=True,
              help="Persistent volume for models and host keys.")
@click.option("--network-volume", default=None, metavar="VOLUME_ID", help="Use this network volume instead.")
@click.option("--idle-stop", "idle_stop", type=click.FloatRange(min=1), default=None, metavar="MINUTES",
              help="IDLE_STOP_MINUTES: the pod stops itself after this long without use.")
@click.option("--image", default=None,
              help="Pod image. Default: PODTUI_IMAGE, else [runpod] image in the config, else the image "
                   f"published for this podtui version ({default_image_text()}). Your own: build image/ "
                   "(image/README.md), push it, pass its reference here.")
@click.option("--cloud", type=click.Choice(["SECURE", "COMMUNITY"]), default="SECURE", show_default=True)
@click.option("--env", "extra_env", multiple=True, metavar="NAME=VALUE", help="More pod environment; repeatable.")
@click.option("--jupyter", is_flag=True,
              help="Run Jupyter Lab in the pod (JUPYTER=1) on its 127.0.0.1:8888 only, token required; open it "
              "with `podtui tunnel POD --jupyter`. Runpod's startJupyter (a public proxied port) is never used.")
@click.option("--with-hf-token", is_flag=True,
              help="Pass HF_TOKEN from this environment to the pod (never taken from the command line).")
@click.option("--ssh-public-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Authorize this public key (PUBLIC_KEY); default: the account's registered keys.")
@click.option("--wait-timeout", type=float, default=900, show_default=True,
              help="Seconds to wait for RUNNING with a public SSH port.")
@click.option("--log-timeout", type=float, default=300, show_default=True,
              help="Seconds to wait for the printed host keys in the pod log.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object; progress as JSON lines on stderr.")
def launch(gpu: str, model: str, ctx: str | None, engine: str | None, engine_args: str | None, port: int,
           name: str, gpu_count: int, volume_gb: int, network_volume: str | None, idle_stop: float | None,
           image: str | None, cloud: str, extra_env: tuple[str, ...], jupyter: bool, with_hf_token: bool,
           ssh_public_key: Path | None, wait_timeout: float, log_timeout: float, as_json: bool) -> None:
    """Create a pod, wait until it runs, read its printed host keys from its log and pin them."""
    ctx_value = ctx_option(ctx)     # the agent's own rule: a positive number or auto
    ctx = None if ctx_value is None else str(ctx_value)
    if model and not network_volume and (problem := model_problem(model)):
        # With a network volume MODEL may name a file already on it; the pod's agent checks that.
        raise UsageProblem(f"--model: {problem}", "fix MODEL before a pod is created and billed")
    hf_token = hf_token_option(with_hf_token)
    spec = PodSpec(gpu=gpu, model=model, name=name, gpu_count=gpu_count, ctx=ctx, engine=engine,
                   args=engine_args, port=port, idle_stop_minutes=idle_stop, volume_gb=volume_gb,
                   network_volume_id=network_volume, image=image or "", cloud=cloud,
                   ssh_public_key=ssh_public_key.read_text().strip() if ssh_public_key else None,
                   hf_token=hf_token, extra_env={**_env_pairs(extra_env), **({"JUPYTER": "1"} if jupyter else {})})
    service = PodService(open_provider(), wait_timeout_s=wait_timeout, block_timeout_s=log_timeout,
                         poll_s=float(os.environ.get("PODTUI_POLL_S") or 5.0))
    result = service.launch(spec, _progress(as_json))
    if as_json:
        click.echo(json.dumps(result.as_dict()))
        return
    pod = result.pod
    click.echo(f"pod {pod.id} ({pod.name}) is running on {pod.gpu_count}x {pod.gpu}, "
               f"{format_price(pod.price_per_hr, '-')}/hr")
    click.echo(f"  SSH        {result.endpoint.user}@{result.endpoint.host}:{result.endpoint.port} (direct)")
    for pin in result.pins:
        click.echo(f"  host key   {pin.key.key_type} {pin.key.fingerprint} (pinned from the pod's log)")
    click.echo(f"  next       podtui tunnel {pod.id}{' --jupyter' if jupyter else ''}")


def _find(ref: str) -> tuple[Provider, Pod]:
    """POD → its provider and pod: `local`, an added SSH host's name, else a Runpod id or name."""
    warnings: list[str] = []
    found = find_anywhere(ref, on_wait=lambda note: _say(f"[{time.strftime('%H:%M:%S')}] {note}"),
                          warnings=warnings)
    for warning in warnings:
        _say(warning)
    return found


def _action_command(verb: str, doc: str):
    @click.command(name=verb, help=doc)
    @click.argument("pod")
    @click.option("--json", "as_json", is_flag=True, help="Print the pod as one JSON object.")
    def command(pod: str, as_json: bool) -> None:
        provider, target = _find(pod)
        updated = provider.stop_pod(target.id) if verb == "stop" else provider.resume_pod(target.id)
        if as_json:
            click.echo(json.dumps(updated.as_dict()))
        else:
            click.echo(f"pod {updated.id} ({updated.name}): {updated.status}")
    return command


stop = _action_command("stop", "Stop POD (id or name): compute is released, the volume is kept. "
                                "An added SSH host's engine is stopped; `local` stops this machine's daemon.")
resume = _action_command("resume", "Resume a stopped POD (id or name); its host keys stay the same. "
                                   "`local` starts this machine's daemon again with its last model.")


@click.command()
@click.argument("pod")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
def terminate(pod: str, yes: bool, as_json: bool) -> None:
    """Terminate POD (id or name) for good: its volume and models are deleted."""
    provider, target = _find(pod)
    if not yes:
        prompt = (f"Terminate pod {target.id} ({target.name}, {target.status})? Its volume, models and "
                  "host keys are deleted for good")
        try:
            confirmed = click.confirm(prompt, default=False, err=True)
        except click.Abort:
            confirmed = False
        if not confirmed:
            raise UsageProblem(f"pod {target.id} was not terminated", "answer y, or pass --yes")
    provider.terminate_pod(target.id)
    if as_json:
        click.echo(json.dumps({"id": target.id, "name": target.name, "status": "TERMINATED"}))
    else:
        click.echo(f"pod {target.id} ({target.name}) terminated")
    sys.stdout.flush()


COMMANDS = [pods, launch, stop, resume, terminate]
