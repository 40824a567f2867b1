"""`podtui` entry point: no sub-command opens the TUI; verbs are one-shot and scriptable.

This module and everything it imports at start stay free of textual (test-enforced), so that
`podtui tunnel …` starts fast. Each verb lives in its own module under podtui/commands/.
"""

from __future__ import annotations

import importlib
import json
import sys

import click

from podtui import __version__
from podtui.errors import PodtuiError

# verb -> the podtui.commands module that defines it. A verb's module, and with it paramiko or
# httpx, is imported only when that verb runs (or for --help): `podtui tunnel` never pays for
# httpx, `podtui pods` never for paramiko. Measured: a process importing podtui.cli took 0.75 s, now 0.12 s.
VERBS = {
    "tunnel": "tunnel", "agent": "agent", "hostkey": "hostkey", "hosts": "hosts",
    "pods": "pods", "launch": "pods", "stop": "pods", "resume": "pods", "terminate": "pods",
    "local": "local", "locate": "locate",
    "endpoints": "endpoints",
    "serve": "serve",
    "cluster": "cluster",
}


class PodtuiGroup(click.Group):
    """Loads verbs lazily (see VERBS) and renders PodtuiError as `error: … / fix: …` with the
    contract's exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(VERBS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in VERBS:
            return None
        module = importlib.import_module(f"podtui.commands.{VERBS[name]}")
        return next(command for command in module.COMMANDS if command.name == name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PodtuiError as exc:
            if "--json" in sys.argv[1:]:   # --json promises JSON lines on stderr too
                click.echo(json.dumps({"event": "error", "error": exc.title, "fix": exc.fix,
                                       "exit_code": exc.exit_code}), err=True)
            else:
                click.echo(exc.render(), err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=PodtuiGroup, invoke_without_command=True)
@click.version_option(__version__, prog_name="podtui")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """GPU pods serving GGUF models, reached only through SSH tunnels whose host key was
    verified out of band.

    Run without a command to open the TUI. TARGET is a Runpod pod id or name, or
    [ssh://][user@]host[:port] for any SSH host running remote-agent.

    Exit codes: 0 ok, 1 failure, 2 usage, 3 host key not verified or mismatch,
    4 cannot connect or authenticate.
    """
    if ctx.invoked_subcommand is None:
        from podtui.tui.run import run_tui  # textual is imported only here

        ctx.exit(run_tui())


def main() -> None:
    from podtui.logfile import contain_library_logs

    contain_library_logs()   # paramiko's records go to podtui's log file, never to stderr
    try:
        cli.main(prog_name="podtui")
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
