"""`podtui hosts add|list|remove`: SSH hosts running remote-agent, kept in podtui's config file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from podtui import paths
from podtui.commands.ssh_options import canonical_fingerprints
from podtui.agent.client import DEFAULT_AGENT_COMMAND
from podtui.errors import UsageProblem
from podtui.providers.ssh_host import (SshHost, default_name, find_host, forget_host, host_from_address,
                                       load_hosts, save_host)
from podtui.services import hostkeys
from podtui.services.sessions import ssh_host_provider
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.trust import describe_pins


@click.group()
def hosts() -> None:
    """SSH hosts (your own GPU box, another cloud's VM) where remote-agent runs.

    An added host is a pod named by its NAME: `podtui tunnel NAME`, `podtui agent NAME status`,
    and `podtui pods` lists it. Its host key is pinned like any SSH host's (`[host]:port`).
    """


def _pin_presented(host: SshHost, fingerprint: str, timeout_s: float) -> dict:
    """Key exchange only (no login): pin the presented key if it has the fingerprint given."""
    (expected,) = canonical_fingerprints((fingerprint,))
    pins = hostkeys.pin_if_presented(
        host.target(), KnownHosts(paths.known_hosts_file()), expected, connect_timeout_s=timeout_s,
        outcome="the host was not added",
        fix="compare with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run on the host itself")
    return describe_pins(pins)[0]


@hosts.command()
@click.argument("address")
@click.option("--name", default=None, help="What to call it (default: from the host name).")
@click.option("-i", "--identity", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Private key to log in with (default: ssh-agent, then ~/.ssh/id_*).")
@click.option("--agent-command", default=None,
              help=f"Command on the host bridging to the agent's socket (default `{DEFAULT_AGENT_COMMAND}`).")
@click.option("--fingerprint", default=None, metavar="SHA256:…",
              help="The host key's fingerprint, read on the host itself: it is checked and pinned now.")
@click.option("--connect-timeout", type=float, default=5.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def add(address: str, name: str | None, identity: Path | None, agent_command: str | None,
        fingerprint: str | None, connect_timeout: float, as_json: bool) -> None:
    """Add ADDRESS (user@host:port) as a pod, then ask its agent for its status."""
    name = name or default_name(address)
    host = host_from_address(name, address, identity, agent_command)
    if find_host(host.name) is not None:
        raise UsageProblem(f"an SSH host named {host.name!r} is already added",
                           f"pick another --name, or `podtui hosts remove {host.name}` first")
    pinned = _pin_presented(host, fingerprint, connect_timeout) if fingerprint else None
    path = save_host(host)
    pod = ssh_host_provider([host], connect_timeout_s=connect_timeout).get_pod(host.name)
    if as_json:
        click.echo(json.dumps({"host": host.as_dict(), "config": str(path), "pinned": pinned,
                               "pod": pod.as_dict()}))
        return
    click.echo(f"added {host.name} ({host.address}) to {path}")
    if pinned:
        click.echo(f"  host key  {pinned['type']} {pinned['fingerprint']} (pinned, verified)")
    click.echo(f"  status    {pod.status}: {pod.detail}")


@hosts.command(name="list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--connect-timeout", type=float, default=5.0, show_default=True)
def list_hosts(as_json: bool, connect_timeout: float) -> None:
    """The added hosts, each with its agent's status (or why it is unreachable)."""
    added = load_hosts()
    pods = ssh_host_provider(added, connect_timeout_s=connect_timeout).list_pods()
    if as_json:
        click.echo(json.dumps({"hosts": [{**h.as_dict(), "status": p.status, "detail": p.detail,
                                          "pod": p.as_dict()} for h, p in zip(added, pods)]}))
        return
    if not added:
        click.echo("no SSH hosts (add one with `podtui hosts add user@host:port -i KEY`)")
    for host, pod in zip(added, pods):
        click.echo(f"{host.name}  {host.address}  {pod.status}  {pod.detail}")


@hosts.command()
@click.argument("name")
def remove(name: str) -> None:
    """Forget NAME (its host-key pins stay in podtui's known_hosts)."""
    if not forget_host(name):
        raise UsageProblem(f"no SSH host named {name!r} is added", "see them with `podtui hosts list`")
    click.echo(f"removed {name}")


COMMANDS = [hosts]
