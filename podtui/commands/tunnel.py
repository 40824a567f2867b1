"""`podtui tunnel TARGET`: verify the host key, then forward local ports until Ctrl-C."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from podtui import paths
from podtui.commands.ssh_options import build_connection, connection_options, openssh_command, ssh_session
from podtui.ssh.forwards import ForwardSpec, parse_forward
from podtui.ssh.tunnel import Tunnel

if TYPE_CHECKING:
    from podtui.services.jupyter_access import JupyterInfo

DEFAULT_FORWARD = "5002"  # local 5002 → the engine port 5002 on the pod's loopback
JUPYTER_FORWARD = "8888"  # local 8888 → Jupyter on the pod's loopback (remote_agent/jupyter.py)
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
@click.option("--jupyter", is_flag=True,
              help="Also forward Jupyter (local 8888 -> the pod's 127.0.0.1:8888) and print its URL with the token. "
              "The pod runs Jupyter when started with JUPYTER=1 or JUPYTER_PASSWORD (podtui launch --jupyter). "
              "With -L, forward Jupyter's port yourself (e.g. -L 5002 -L 8888).")
@connection_options
@click.option("--agent-command", envvar="PODTUI_AGENT_COMMAND", default=None,
              help="Remote command bridging to the agent's socket, asked for the engine's API key and Jupyter's "
                   "token (default: the added host's, else `remote-agent rpc`).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object when the tunnel is up.")
def tunnel(target: str, forward_specs: tuple[str, ...], jupyter: bool, identity: Path | None, user: str | None,
           fingerprints: tuple[str, ...], accept_unverified: bool, connect_timeout: float,
           agent_command: str | None, as_json: bool) -> None:
    """Open verified tunnels to TARGET and keep them up (reconnecting) until Ctrl-C.

    The host key must match a pin in podtui's known_hosts or a --fingerprint; on every
    reconnect it is checked again. With --fingerprint, a pod's log is not read for its printed
    keys: the fingerprint given is the out-of-band check (the way past a damaged log). A forward
    bound beyond loopback (0.0.0.0, *, [::], another address) is warned about on stderr.
    With --jupyter (or a forward to the pod's 8888) the pod's agent is also asked for Jupyter's token
    and the URL to open is printed (pods started with JUPYTER=1; Jupyter listens on their loopback only).
    Exit codes: 3 host key not verified, 4 cannot connect.
    """
    defaults = (DEFAULT_FORWARD, JUPYTER_FORWARD) if jupyter else (DEFAULT_FORWARD,)
    forwards = [parse_forward(spec) for spec in (forward_specs or defaults)]
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
        _report_up(tunnel, ports, outcome, identity, as_json, jupyter, agent_command or session.agent_command)
        tunnel.wait()
    except KeyboardInterrupt:
        pass
    finally:
        tunnel.stop()
    if not as_json:
        _say(f"tunnel closed: {json.dumps(tunnel.stats.as_dict())}")


def _report_up(tunnel: Tunnel, ports: list[int], outcome, identity: Path | None, as_json: bool,
               jupyter: bool = False, agent_command: str | None = None) -> None:
    target = tunnel.connection.target
    mapped = [spec.openssh(port) for spec, port in zip(tunnel.forwards, ports)]
    base_url = f"{tunnel.forwards[0].local_url(ports[0])}/v1"   # loopback for an all-interfaces bind
    command = openssh_command(target, mapped, identity)
    want_jupyter = jupyter or any(spec.remote_port == int(JUPYTER_FORWARD) for spec in tunnel.forwards)
    api_key, key_note, notebook = _agent_facts(tunnel, want_jupyter, agent_command)
    notebook = _jupyter_fields(notebook, tunnel.forwards, ports) if want_jupyter else None
    if notebook is not None and not notebook.get("url") and not jupyter:
        notebook = None  # -L 8888 without --jupyter may forward something else: no warning about Jupyter
    if notebook is not None and notebook.get("note"):
        _warn(as_json, "jupyter", notebook["note"], fix=notebook.get("fix"))
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
            "jupyter": notebook,
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
    if notebook is not None and notebook.get("url"):
        click.echo(f"  Jupyter   {notebook['url']}  ({notebook['state']})")
    click.echo(f"  OpenSSH   {command}")
    click.echo("            (OpenSSH stalls ~44 ms per new connection with -N; `-tt … 'sleep infinity'` "
               "instead of -N avoids it)")
    click.echo("Ctrl-C to stop.")
    sys.stdout.flush()


def _agent_facts(tunnel: Tunnel, want_jupyter: bool,
                 agent_command: str | None) -> tuple[str | None, str, JupyterInfo | str | None]:
    """The engine's API key and, when asked, Jupyter's state and token, as the pod's agent tells them
    over the tunnel's own verified connection: (key, key note, JupyterInfo | None | why unknown). Any
    failure only costs the facts: a plain SSH host may run no podtui agent."""
    from podtui.agent.client import DEFAULT_AGENT_COMMAND, AgentClient
    from podtui.errors import PodtuiError
    from podtui.services.engine_access import engine_api_key, key_text
    from podtui.services.jupyter_access import jupyter_info

    client = AgentClient(tunnel.connection, agent_command or DEFAULT_AGENT_COMMAND, hello_timeout=AGENT_HELLO_S)
    try:
        client.open()
        key = engine_api_key(client)
        notebook = jupyter_info(client) if want_jupyter else None
        return key, "" if key else key_text(None), notebook
    except PodtuiError as exc:
        why = f"unknown: no podtui agent answered ({exc.title})"
        return None, why, why
    finally:
        client.close()


def _jupyter_fields(notebook: JupyterInfo | str | None, forwards: list[ForwardSpec], ports: list[int]) -> dict:
    """What the report says about Jupyter: url, state, local, remote; or a note and its fix."""
    if isinstance(notebook, str) or notebook is None:
        return {"url": None, "state": None, "note": f"Jupyter: {notebook}" if notebook else
                "Jupyter: this pod runs none", "fix": "start the pod with JUPYTER=1 (podtui launch --jupyter) "
                "or JUPYTER_PASSWORD set; its log says why when it stopped"}
    fields = {"url": None, "state": notebook.state, "remote": f"127.0.0.1:{notebook.port}",
              "last_error": notebook.last_error}
    for spec, port in zip(forwards, ports):
        if spec.remote_port == notebook.port:
            fields.update(url=notebook.url(spec.local_url(port)), local=spec.local_address(port))
            break
    else:
        fields.update(note=f"Jupyter listens on the pod's 127.0.0.1:{notebook.port}, which no forward reaches",
                      fix=f"add -L {notebook.port} (or use --jupyter without -L)")
    if notebook.state != "running" and not fields.get("note"):
        fields.update(note=f"Jupyter is {notebook.state}" + (f" ({notebook.last_error})" if notebook.last_error
                                                              else ""), fix="read the pod's log: podtui logs POD")
    return fields


COMMANDS = [tunnel]
