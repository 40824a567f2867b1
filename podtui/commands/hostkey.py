"""`podtui hostkey TARGET`: show, pin, or pin from a pod log."""

from __future__ import annotations

import click

from podtui.errors import NotBuiltYet


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("target")
@click.argument("rest", nargs=-1, type=click.UNPROCESSED)
def hostkey(target: str, rest: tuple[str, ...]) -> None:
    """Show or pin TARGET's SSH host key."""
    raise NotBuiltYet("hostkey", 4)


COMMANDS = [hostkey]
