"""`podtui tunnel TARGET`: verify the host key, then forward local ports until Ctrl-C."""

from __future__ import annotations

import click

from podtui.errors import NotBuiltYet


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("target")
@click.argument("rest", nargs=-1, type=click.UNPROCESSED)
def tunnel(target: str, rest: tuple[str, ...]) -> None:
    """Open verified tunnels to TARGET (OpenSSH -L syntax)."""
    raise NotBuiltYet("tunnel", 4)


COMMANDS = [tunnel]
