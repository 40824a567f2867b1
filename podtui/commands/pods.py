"""Pod lifecycle verbs: pods, launch, stop, resume, terminate."""

from __future__ import annotations

import click

from podtui.errors import NotBuiltYet


def _not_built(verb: str) -> click.Command:
    @click.command(name=verb, context_settings={"ignore_unknown_options": True})
    @click.argument("rest", nargs=-1, type=click.UNPROCESSED)
    def command(rest: tuple[str, ...]) -> None:
        raise NotBuiltYet(verb, 6)

    command.help = f"`{verb}` arrives with the providers issue (#6)."
    return command


COMMANDS = [_not_built(verb) for verb in ("pods", "launch", "stop", "resume", "terminate")]
