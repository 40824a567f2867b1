"""`podtui agent TARGET …`: drive the in-pod agent over an SSH exec channel."""

from __future__ import annotations

import click

from podtui.errors import NotBuiltYet


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("target")
@click.argument("rest", nargs=-1, type=click.UNPROCESSED)
def agent(target: str, rest: tuple[str, ...]) -> None:
    """Talk to remote-agent on TARGET: status, models, swap, fit, logs."""
    raise NotBuiltYet("agent", 4)


COMMANDS = [agent]
