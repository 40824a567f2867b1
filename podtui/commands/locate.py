"""`podtui locate`: where podtui keeps its config, pins and logs."""

from __future__ import annotations

import json

import click

from podtui import paths


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def locate(as_json: bool) -> None:
    """Print the paths of podtui's config, host-key pins and logs."""
    locations = {name: str(path) for name, path in paths.all_locations().items()}
    if as_json:
        click.echo(json.dumps(locations))
        return
    width = max(map(len, locations))
    for name, path in locations.items():
        click.echo(f"{name:<{width}}  {path}")


COMMANDS = [locate]
