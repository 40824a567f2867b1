"""`podtui cluster link|status|list|unlink`: llama.cpp RPC clusters (issue 18) linked over verified SSH."""

from __future__ import annotations

import json
from pathlib import Path

import click

from podtui.commands.ssh_options import say_progress
from podtui.errors import UsageProblem
from podtui.services import cluster as clusters
from podtui.services import sessions
from podtui.ssh.identities import terminal_prompt


def _options(identity: Path | None, connect_timeout: float):
    return sessions.connect_options(identity, connect_timeout, ask_passphrase=terminal_prompt())


def _reach(values: tuple[str, ...]) -> dict[str, str]:
    reach = {}
    for value in values:
        ref, sep, address = value.partition("=")
        host, colon, port = address.rpartition(":")
        if not sep or not colon or not host or not port.isdigit():
            raise UsageProblem(f"--reach {value!r} is not BACKEND=HOST:PORT",
                               "e.g. --reach b1=10.65.0.3:22 (the backend's sshd as the server pod reaches it)")
        reach[ref] = address
    return reach


@click.group()
def cluster() -> None:
    """llama.cpp RPC clusters: one model across a server pod and its backend pods.

    The server pod runs APP_MODE=server with APP_RPC_BACKENDS=127.0.0.1:60151,… (one entry per
    backend); each backend runs APP_MODE=backend. `cluster link` joins them with SSH links that the
    server's agent owns and supervises, checked against the host keys podtui pinned as verified.
    """


@cluster.command()
@click.argument("server")
@click.argument("backends", nargs=-1)
@click.option("--name", default=None, help="What to call the cluster (default: SERVER).")
@click.option("--reach", multiple=True, metavar="BACKEND=HOST:PORT",
              help="The backend's sshd as the server pod reaches it, when not the address podtui uses; repeatable.")
@click.option("--direct", is_flag=True,
              help="No links: the server reaches the backends' RPC port directly (a Runpod Instant Cluster's "
                   "overlay, APP_BIND=NODE_ADDR). Trusts every pod on that overlay: ggml-rpc-server has no auth.")
@click.option("-i", "--identity", type=click.Path(path_type=Path), default=None,
              help="Private key podtui logs in with (default: ssh-agent, then ~/.ssh/id_*; added hosts use theirs).")
@click.option("--connect-timeout", type=float, default=10.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object; progress as JSON lines on stderr.")
def link(server: str, backends: tuple[str, ...], name: str | None, reach: tuple[str, ...], direct: bool,
         identity: Path | None, connect_timeout: float, as_json: bool) -> None:
    """Link SERVER to BACKENDS (pods, added SSH hosts or SSH addresses running remote-agent), in the
    order of the server's APP_RPC_BACKENDS.

    Refuses pods of different llama.cpp builds and backends whose host key is not pinned as verified.
    A key pair is made for the cluster: its public half is authorized on each backend for its RPC
    port only, its private half goes to the server's agent over the verified channel and nowhere else.
    Exit 3 when a host key is not verified, 4 when a pod cannot be reached, 1 when the pods do not fit.
    """
    result = clusters.link_cluster(server, list(backends), name=name, reach=_reach(reach), direct=direct,
                                   options=_options(identity, connect_timeout) if identity else None,
                                   progress=say_progress)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"cluster {result['name']}: server {server}, backends {', '.join(backends)}"
               + (" (direct, no links)" if direct else ""))
    for item in result["links"]:
        click.echo(f"  link {item['name']}  {item['endpoint']} → {item['backend']} (rpc {item['rpc_port']})  "
                   f"{item['state']}")


@cluster.command(name="list")
@click.option("--json", "as_json", is_flag=True)
def list_clusters(as_json: bool) -> None:
    """The clusters podtui linked (no pod is contacted)."""
    known = clusters.load_clusters()
    if as_json:
        click.echo(json.dumps({"clusters": list(known.values())}))
        return
    if not known:
        click.echo("no clusters (link one with `podtui cluster link SERVER BACKEND…`)")
    for record in known.values():
        click.echo(f"{record['name']}  server {record['server']}  backends {', '.join(record['backends'])}"
                   f"{'  direct' if record.get('direct') else ''}")


@cluster.command()
@click.argument("name")
@click.option("--connect-timeout", type=float, default=10.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def status(name: str, connect_timeout: float, as_json: bool) -> None:
    """NAME's server (state, each link, each backend's handshake) and backends (state, build, devices)."""
    result = clusters.cluster_status(name)
    if as_json:
        click.echo(json.dumps(result))
        return
    s = result["server"]
    click.echo(f"cluster {name}: server {s['ref']} {s['state']}  ({s['build']})")
    for item in s["links"]:
        error = f"  {item['last_error']}" if item.get("last_error") and item["state"] != "up" else ""
        click.echo(f"  link {item['name']}  {item['endpoint']} → {item['backend']}  {item['state']} "
                   f"for {item['for_s']} s, {item['restarts']} restart(s){error}")
    for backend in result["backends"]:
        devices = ", ".join(f"{d.get('name')} {d.get('free_mib')}/{d.get('total_mib')} MiB" for d in backend["devices"])
        click.echo(f"  backend {backend['ref']}  {backend['state']}  {devices}")


@cluster.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def unlink(name: str, as_json: bool) -> None:
    """Stop NAME's links, remove the cluster key from its backends and forget it (pods keep running)."""
    result = clusters.unlink_cluster(name)
    click.echo(json.dumps(result) if as_json else f"unlinked {name}")


COMMANDS = [cluster]
