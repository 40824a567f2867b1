"""`podtui tunnel TARGET`: verify the host key, then forward local ports until Ctrl-C."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import click

from podtui import paths
from podtui.commands.ssh_options import build_connection, connection_options, openssh_command, ssh_session
from podtui.ssh.forwards import ForwardSpec, parse_forward
from podtui.ssh.tunnel import Tunnel

DEFAULT_FORWARD = "5002"  # local 5002 → the engine port 5002 on the pod's loopback
AGENT_HELLO_S = 5.0       # how long to wait for the pod's agent to tell the engine's API key


def _say(message: str) -> None:
    click.echo(message, err=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _warn(as_json: bool, kind: str, message: str, text: str | None = None, **fields) -> None:
    """A warning on stderr: in --json mode one JSON line (stderr stays JSON lines only), else
    `text` (default: the message)."""
    if as_json:
        click.echo(json.dumps({"event": "warning", "ts": time.strftime("%H:%M:%S"), "kind": kind,
                               "message": message, **fields}), err=True)
    else:
        _say(text or message)


def _warn_public_binds(forwards: list[ForwardSpec], ports: list[int], as_json: bool) -> None:
    for spec, port in zip(forwards, ports):
        warning = spec.public_bind_warning(port)
        if warning is not None:
            _warn(as_json, "public_bind", warning.message, text=warning.render(), local=warning.local,
                  fix=warning.fix)


def _event_printer(as_json: bool):
    def on_event(kind: str, data: dict) -> None:
        stamp = time.strftime("%H:%M:%S")
        if as_json:
            click.echo(json.dumps({"event": kind, "ts": stamp, **data}), err=True)
        elif kind == "down":
            _say(f"[{stamp}] SSH connection dropped ({data['reason']}); reconnecting "
                 "(the host key is checked again)")
        elif kind == "retry":
            _say(f"[{stamp}] reconnect attempt {data['attempt']} failed: {data['error']}")
        elif kind == "up":
            _say(f"[{stamp}] reconnected; host key verified again: {data['fingerprint']}")
        elif kind == "fatal":
            _say(f"[{stamp}] tunnel stopped: {data['error']}")
        elif kind == "channel_failed":
            _say(f"[{stamp}] could not open {data['remote']} on the server: {data['error']}"
                 + (f"\n  fix: {data['fix']}" if data.get("fix") else ""))
    return on_event


@click.command()
@click.argument("target")
@click.option("-L", "forward_specs", multiple=True, metavar="[BIND:]LPORT:RHOST:RPORT | LPORT[:RPORT]",
              help="Local forward in OpenSSH syntax; repeatable. Default: 5002 → the pod's 127.0.0.1:5002.")
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object when the tunnel is up.")
def tunnel(target: str, forward_specs: tuple[str, ...], identity: Path | None, user: str | None,
           fingerprints: tuple[str, ...], accept_unverified: bool, connect_timeout: float,
           as_json: bool) -> None:
    """Open verified tunnels to TARGET and keep them up (reconnecting) until Ctrl-C.

    The host key must match a pin in podtui's known_hosts or a --fingerprint; on every
    reconnect it is checked again. With --fingerprint, a pod's log is not read for its printed
    keys: the fingerprint given is the out-of-band check (the way past a damaged log). A forward
    bound beyond loopback (0.0.0.0, *, [::], another address) is warned about on stderr.
    Exit codes: 3 host key not verified, 4 cannot connect.
    """
    forwards = [parse_forward(spec) for spec in (forward_specs or (DEFAULT_FORWARD,))]
    session = ssh_session(target, user, pin_from_log=not fingerprints)
    connection = build_connection(target, user, identity, fingerprints, accept_unverified, connect_timeout,
                                  session=session)
    tunnel = Tunnel(connection, forwards, on_event=_event_printer(as_json))
    ports = tunnel.bind()  # a busy local port fails here, before any byte goes to the server
    _warn_public_binds(forwards, ports, as_json)
    # SIGTERM ends the tunnel like Ctrl-C does: cleanly, exit 0.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcome = tunnel.start()
        if outcome.warning:
            _warn(as_json, "host_key_unverified", outcome.warning)
        _report_up(tunnel, ports, outcome, identity, as_json)
        tunnel.wait()
    except KeyboardInterrupt:
        pass
    finally:
        tunnel.stop()
    if not as_json:
        _say(f"tunnel closed: {json.dumps(tunnel.stats.as_dict())}")


def _report_up(tunnel: Tunnel, ports: list[int], outcome, identity: Path | None, as_json: bool) -> None:
    target = tunnel.connection.target
    mapped = [spec.openssh(port) for spec, port in zip(tunnel.forwards, ports)]
    base_url = f"{tunnel.forwards[0].local_url(ports[0])}/v1"   # loopback for an all-interfaces bind
    command = openssh_command(target, mapped, identity)
    api_key, key_note = _engine_key(tunnel)
    if as_json:
        click.echo(json.dumps({
            "state": "up",
            "target": target.label,
            "host_key": {"type": outcome.key.key_type, "fingerprint": outcome.key.fingerprint,
                         "verified": outcome.verified, "newly_pinned": outcome.newly_pinned},
            "forwards": [{"local": spec.local_address(port), "remote": spec.remote_address}
                         for spec, port in zip(tunnel.forwards, ports)],
            "base_url": base_url,
            "api_key": api_key,
            "api_key_note": key_note,
            "known_hosts": str(paths.known_hosts_file()),
            "known_hosts_alias": target.alias,
            "openssh_command": command,
        }))
        sys.stdout.flush()
        return
    state = "verified" if outcome.verified else "UNVERIFIED"
    click.echo(f"tunnel up to {target.label}")
    click.echo(f"  host key  {outcome.key.key_type} {outcome.key.fingerprint} ({state}"
               f"{', newly pinned' if outcome.newly_pinned else ''})")
    for spec, port in zip(tunnel.forwards, ports):
        click.echo(f"  forward   {spec.local_address(port)} -> {spec.remote_address} on the server")
    click.echo(f"  base URL  {base_url}")
    click.echo(f"  API key   {api_key if api_key else key_note}")
    click.echo(f"  OpenSSH   {command}")
    click.echo("            (OpenSSH stalls ~44 ms per new connection with -N; `-tt … 'sleep infinity'` "
               "instead of -N avoids it)")
    click.echo("Ctrl-C to stop.")
    sys.stdout.flush()


def _engine_key(tunnel: Tunnel) -> tuple[str | None, str]:
    """The engine's API key as the pod's agent tells it over the tunnel's own verified
    connection, and a note: (key, "") or (None, why there is none). Any failure only costs the
    key: a plain SSH host may run no podtui agent."""
    from podtui.agent.client import AgentClient
    from podtui.errors import PodtuiError
    from podtui.services.engine_access import engine_api_key, key_text

    client = AgentClient(tunnel.connection, hello_timeout=AGENT_HELLO_S)
    try:
        client.open()
        key = engine_api_key(client)
        return key, "" if key else key_text(None)
    except PodtuiError as exc:
        return None, f"unknown: no podtui agent answered ({exc.title})"
    finally:
        client.close()


COMMANDS = [tunnel]
