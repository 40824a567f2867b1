"""Options shared by the verbs that open an SSH connection (tunnel, hostkey, agent)."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import click

from podtui import paths
from podtui.errors import UsageProblem
from podtui.services import sessions
from podtui.services.sessions import SessionTarget, resolve_session_target
from podtui.ssh.connection import SshConnection
from podtui.ssh.hostkeys import normalize_fingerprint
from podtui.ssh.identities import terminal_prompt
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.target import SshTarget


def connection_options(func):
    """-i, --user, --fingerprint, --accept-unverified, --connect-timeout."""
    decorators = [
        click.option("-i", "--identity", type=click.Path(path_type=Path), default=None,
                     help="Private key to log in with (used alone). Default: ssh-agent, then ~/.ssh/id_*."),
        click.option("--user", default=None, help="Login name (default: the one in TARGET, else yours)."),
        click.option("--fingerprint", "fingerprints", multiple=True, metavar="SHA256:…",
                     help="Host-key fingerprint obtained out of band (the pod's log); repeatable."),
        click.option("--accept-unverified", is_flag=True,
                     help="DANGEROUS: trust an unknown host key on first contact; the pin is marked unverified."),
        click.option("--connect-timeout", type=float, default=10.0, show_default=True,
                     help="Seconds for the TCP connect and SSH handshake."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def canonical_fingerprints(values: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return tuple(normalize_fingerprint(v) for v in values)
    except ValueError as exc:
        raise UsageProblem(str(exc), "copy the fingerprint exactly as printed: SHA256:<43 characters>") from None


def say_progress(phase: str, detail: str) -> None:
    """Progress of a pod lookup (reading its log for the printed keys) goes to stderr: a JSON
    line `{"event": "progress", "phase", "detail", "ts"}` when the running verb has --json."""
    ctx = click.get_current_context(silent=True)
    stamp = time.strftime('%H:%M:%S')
    if ctx is not None and ctx.params.get("as_json"):
        click.echo(json.dumps({"event": "progress", "ts": stamp, "phase": phase, "detail": detail}), err=True)
    else:
        click.echo(f"[{stamp}] {detail}", err=True)


def resolve_session(target_text: str, user: str | None, *, pin_from_log: bool = True) -> SessionTarget:
    return resolve_session_target(target_text, user, say_progress, pin_from_log=pin_from_log)


def ssh_session(target_text: str, user: str | None, *, pin_from_log: bool = True) -> SessionTarget:
    """Like resolve_session, but the local pod (no SSH) is a usage error naming what to do."""
    session = resolve_session(target_text, user, pin_from_log=pin_from_log)
    if session.local:
        from podtui.providers.local_daemon import LocalDaemon

        port = LocalDaemon().settings().port
        raise UsageProblem(
            "the local pod runs on this machine: there is no SSH connection, tunnel or host key to it",
            f"its engine is at http://127.0.0.1:{port}/v1 already; "
            "talk to its agent with `podtui agent local status`")
    return session


def build_connection(target_text: str, user: str | None, identity: Path | None,
                     fingerprints: tuple[str, ...], accept_unverified: bool,
                     connect_timeout: float = 10.0, session: SessionTarget | None = None) -> SshConnection:
    """TARGET (an added host's name, a Runpod pod id or name, or an SSH address) → a connection
    whose host-key policy holds the pins. An added host's identity is used unless -i is given."""
    session = session or ssh_session(target_text, user)
    return sessions.build_connection(session.ssh, KnownHosts(paths.known_hosts_file()),
                                     sessions.connect_options(identity or session.identity, connect_timeout,
                                                              ask_passphrase=terminal_prompt()),
                                     canonical_fingerprints(fingerprints), accept_unverified)


def openssh_command(target: SshTarget, forwards: list[str], identity: Path | None) -> str:
    """The plain OpenSSH command that trusts exactly the same pins."""
    args = ["ssh", "-N"]
    for forward in forwards:
        args += ["-L", forward]
    if target.port != 22:
        args += ["-p", str(target.port)]
    if identity is not None:
        args += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
    # GlobalKnownHostsFile: podtui reads only its own file, so ssh must too (a line in the system
    # file could otherwise trust or revoke what podtui does not); UpdateHostKeys=no: a server
    # must not add keys to the pins file behind podtui's back (a user's ssh_config may enable it).
    args += ["-o", f"HostKeyAlias={target.alias}",
             "-o", f"UserKnownHostsFile={paths.known_hosts_file()}",
             "-o", "GlobalKnownHostsFile=/dev/null",
             "-o", "UpdateHostKeys=no",
             "-o", "StrictHostKeyChecking=yes",
             f"{target.user}@{target.host}"]
    return shlex.join(args)
