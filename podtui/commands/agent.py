"""`podtui agent TARGET …`: drive the in-pod agent over an SSH exec channel (`remote-agent rpc`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from podtui import paths
from podtui.agent.client import DEFAULT_AGENT_COMMAND, AgentClient
from podtui.commands.ssh_options import canonical_fingerprints, connection_options, resolve_session
from podtui.services import sessions
from podtui.services.inputs import ctx_option
from podtui.ssh.identities import terminal_prompt
from podtui.ssh.known_hosts import KnownHosts


def _client(ctx: click.Context) -> AgentClient:
    """Connect on first use (verifying the host key); the context closes it at the end."""
    state = ctx.obj
    if state.get("client") is None:
        session = resolve_session(state["target"], state["user"])
        state["client"] = ctx.with_resource(sessions.agent_session(
            session, KnownHosts(paths.known_hosts_file()),
            options=sessions.connect_options(state["identity"] or session.identity, state["connect_timeout"],
                                             ask_passphrase=terminal_prompt()),
            fingerprints=canonical_fingerprints(state["fingerprints"]),
            accept_unverified=state["accept_unverified"], command=state["agent_command"],
            warn=lambda message: click.echo(message, err=True)))
    return state["client"]


def _print(value, as_json: bool, human) -> None:
    if as_json:
        click.echo(json.dumps(value))
    else:
        human(value)


_VERB_HELP = "--podtui-verb-help"   # stands in for a verb's --help while the group parses


class AgentGroup(click.Group):
    """The group takes its options anywhere (`podtui agent HOST status -i KEY`), so it would also
    take `--help` after a verb and show its own help; a --help that follows a verb is kept for
    that verb (`podtui agent HOST swap --help` lists --ctx)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        verb_at = next((i for i, arg in enumerate(args) if arg in self.commands), None)
        if verb_at is not None:
            args = args[:verb_at + 1] + [_VERB_HELP if a == "--help" else a for a in args[verb_at + 1:]]
        super().parse_args(ctx, args)
        ctx.args = ["--help" if a == _VERB_HELP else a for a in ctx.args]
        return ctx.args


@click.group(cls=AgentGroup,
             context_settings={"allow_interspersed_args": True, "ignore_unknown_options": True})
@click.argument("target")
@connection_options
@click.option("--agent-command", envvar="PODTUI_AGENT_COMMAND", default=None,
              help=f"Remote command bridging to the agent's socket (default: the added host's, "
                   f"else `{DEFAULT_AGENT_COMMAND}`).")
@click.pass_context
def agent(ctx: click.Context, target: str, identity: Path | None, user: str | None,
          fingerprints: tuple[str, ...], accept_unverified: bool, connect_timeout: float,
          agent_command: str) -> None:
    """Talk to remote-agent on TARGET: status, models, swap, fit, logs.

    TARGET is a Runpod pod id or name, a host added with `podtui hosts add`, `local` (this
    machine's pod, no SSH), or [ssh://][user@]host[:port].

    Connects over SSH with the same host-key pins as `podtui tunnel` (exit 3 if not verified).
    """
    ctx.obj = {"target": target, "user": user, "identity": identity, "fingerprints": fingerprints,
               "accept_unverified": accept_unverified, "connect_timeout": connect_timeout,
               "agent_command": agent_command, "client": None}


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _human_status(status: dict) -> None:
    rows = [("state", status.get("state")), ("engine", status.get("engine")),
            ("model", status.get("model")), ("ctx", status.get("ctx")), ("port", status.get("port")),
            ("pid", status.get("pid")), ("uptime_s", status.get("uptime_s")),
            ("models_dir", status.get("models_dir")), ("disk_free_bytes", status.get("disk_free_bytes")),
            ("version", status.get("version"))]
    for name, value in rows:
        click.echo(f"{name:<16}{'-' if value is None else value}")
    error = status.get("last_error")
    if error:
        click.echo(f"{'last_error':<16}{error.get('kind')}: {error.get('message')}")
    for gpu in status.get("gpus") or []:
        click.echo(f"{'gpu':<16}{gpu.get('name')} {gpu.get('memory_free_mib')}/{gpu.get('memory_total_mib')} MiB free")
    if "api_key_required" in status:   # agents older than engine keys do not say
        click.echo(f"{'api_key':<16}{'required' if status['api_key_required'] else 'none'}")
    if status.get("role") not in (None, "engine"):   # seed 003's APP_MODE: backend, server or none
        cluster = status.get("cluster") or {}
        click.echo(f"{'role':<16}{status['role']} (build {cluster.get('build') or '-'})")
        for backend in cluster.get("backends") or []:
            click.echo(f"{'backend':<16}{backend.get('endpoint')} {backend.get('state') or '-'}")
    jupyter = status.get("jupyter")
    if jupyter:   # never the token: `podtui tunnel POD --jupyter` prints the URL with it
        restarts = f", {jupyter['restarts']} restart(s)" if jupyter.get("restarts") else ""
        click.echo(f"{'jupyter':<16}{jupyter.get('state')} on 127.0.0.1:{jupyter.get('port')}{restarts} "
                   "(open: podtui tunnel POD --jupyter)")
    for warning in status.get("warnings") or []:
        click.echo(f"{'warning':<16}{warning}")


@agent.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Engine state, model, context, port and last error."""
    _print(_client(ctx).call("status"), as_json, _human_status)


@agent.command()
@json_option
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """Models on the pod's disk."""
    def human(items: list) -> None:
        if not items:
            click.echo("no models on disk")
        for m in items:
            size = (m.get("size_bytes") or 0) / 2**30
            click.echo(f"{m.get('name')}  {size:.2f} GiB  {m.get('quant') or '-'}  ctx {m.get('trained_ctx') or '-'}")
    _print(_client(ctx).call("models.list"), as_json, human)


def _progress_printer(as_json: bool):
    def on_event(kind: str, data: dict) -> None:
        click.echo(json.dumps({"event": kind, "data": data}) if as_json else f"[{kind}] {_one_line(data)}",
                   err=True)
    return on_event


def _one_line(data: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in data.items())


@agent.command()
@click.argument("model")
@click.option("--ctx", "ctx_value", default=None, help="Context size: a number, or `auto` to fit the memory.")
@json_option
@click.pass_context
def swap(ctx: click.Context, model: str, ctx_value: str | None, as_json: bool) -> None:
    """Hot-swap the served model (the old one keeps serving if the new one fails)."""
    params: dict = {"model": model}
    ctx_number = ctx_option(ctx_value)
    if ctx_number is not None:
        params["ctx"] = ctx_number
    result = _client(ctx).call("engine.swap", params, on_event=_progress_printer(as_json), timeout=None)
    _print(result, as_json, _human_status)


@agent.command()
@json_option
@click.pass_context
def fit(ctx: click.Context, as_json: bool) -> None:
    """Search the largest context that fits the pod's memory."""
    result = _client(ctx).call("fit.search", {}, on_event=_progress_printer(as_json), timeout=None)
    _print(result, as_json, lambda r: click.echo(json.dumps(r, indent=2)))


@agent.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("-n", "lines", type=click.IntRange(0, 100000), default=100, show_default=True)
@click.option("--source", type=click.Choice(["engine", "agent", "all"]), default="all", show_default=True)
@json_option
@click.pass_context
def logs(ctx: click.Context, follow: bool, lines: int, source: str, as_json: bool) -> None:
    """The engine's and agent's log lines."""
    events = _client(ctx).logs(lines, follow=follow, source=source)
    try:
        for kind, data in events:
            if kind != "log":
                continue
            if as_json:
                click.echo(json.dumps(data))
            else:
                click.echo(f"{data.get('source', '?'):<6} {data.get('line', '')}")
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        events.close()  # sends cancel when following


COMMANDS = [agent]
