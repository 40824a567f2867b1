"""Options shared by the verbs that open an SSH connection (tunnel, hostkey, agent)."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from podtui import paths
from podtui.errors import UsageProblem
from podtui.ssh.connection import ConnectOptions, SshConnection
from podtui.ssh.hostkeys import normalize_fingerprint
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.target import SshTarget, resolve_target
from podtui.ssh.trust import HostKeyPolicy


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


def build_connection(target_text: str, user: str | None, identity: Path | None,
                     fingerprints: tuple[str, ...], accept_unverified: bool,
                     connect_timeout: float = 10.0) -> SshConnection:
    target = resolve_target(target_text, user)
    policy = HostKeyPolicy(KnownHosts(paths.known_hosts_file()), target.alias, target.label,
                           canonical_fingerprints(fingerprints), accept_unverified)
    options = ConnectOptions(identity=identity, connect_timeout=connect_timeout,
                             auth_timeout=max(connect_timeout, 15.0))
    return SshConnection(target, policy, options)


def openssh_command(target: SshTarget, forwards: list[str], identity: Path | None) -> str:
    """The plain OpenSSH command that trusts exactly the same pins."""
    args = ["ssh", "-N"]
    for forward in forwards:
        args += ["-L", forward]
    if target.port != 22:
        args += ["-p", str(target.port)]
    if identity is not None:
        args += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
    args += ["-o", f"HostKeyAlias={target.alias}",
             "-o", f"UserKnownHostsFile={paths.known_hosts_file()}",
             "-o", "StrictHostKeyChecking=yes",
             f"{target.user}@{target.host}"]
    return shlex.join(args)
