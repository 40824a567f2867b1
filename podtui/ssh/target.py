"""TARGET on the command line → where to connect and under which known_hosts name to pin.

This module parses `[ssh://][user@]host[:port]`. Runpod pod ids and names are resolved through
`resolve_target()`'s seam: a provider-backed resolver is passed in as `pod_resolver` and returns
an SshTarget whose alias is `podtui-<podid>` (pins follow the pod, not its IP:port, which changes
when a pod resets).
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Callable
from dataclasses import dataclass

from podtui.errors import UsageProblem

_SSH_HOST = re.compile(
    r"^(?:ssh://)?(?:(?P<user>[^@/\s]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+))"
    r"(?::(?P<port>\d{1,5}))?/?$"
)


@dataclass(frozen=True)
class SshTarget:
    """Where to connect (host, port, login user) and the known_hosts alias its pins live under;
    pod_id is set for a cloud pod."""

    host: str
    port: int
    user: str
    alias: str  # the known_hosts name its pins live under
    label: str  # what to call it in messages
    pod_id: str | None = None


def known_hosts_name(host: str, port: int) -> str:
    """OpenSSH's own name for a host in known_hosts: bare on port 22, `[host]:port` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def pod_alias(pod_id: str) -> str:
    """The known_hosts name of a pod's pins: `podtui-<pod_id>` (stable across IP:port changes)."""
    return f"podtui-{pod_id}"


def parse_ssh_target(text: str, user: str | None = None) -> SshTarget | None:
    """An SshTarget for `[ssh://][user@]host[:port]`, or None when text is not of that form.
    The user defaults to `user`, then the local login. Raises UsageProblem for a port outside
    1-65535 or a user in text that differs from `user`."""
    match = _SSH_HOST.match(text.strip())
    if not match:
        return None
    host = match.group("v6") or match.group("host")
    port = int(match.group("port") or 22)
    if not 1 <= port <= 65535:
        raise UsageProblem(f"port {port} in {text!r} is out of range", "use a port from 1 to 65535")
    login = match.group("user") or user or getpass.getuser()
    if match.group("user") and user and match.group("user") != user:
        raise UsageProblem(f"{text!r} names user {match.group('user')!r} but --user says {user!r}",
                           "give the user once, either in TARGET or with --user")
    return SshTarget(host, port, login, known_hosts_name(host, port), f"{login}@{host}:{port}")


def resolve_target(
    text: str,
    user: str | None = None,
    pod_resolver: Callable[[str, str | None], SshTarget | None] | None = None,
) -> SshTarget:
    """Resolve TARGET. An explicit `ssh://` or `user@` form is always an SSH host; otherwise a
    pod resolver (providers) gets the first say, so that a pod named like a hostname still works.
    Raises UsageProblem when text is neither, and lets whatever pod_resolver raises through."""
    explicit_ssh = text.startswith("ssh://") or "@" in text
    if pod_resolver is not None and not explicit_ssh:
        target = pod_resolver(text, user)
        if target is not None:
            return target
    target = parse_ssh_target(text, user)
    if target is None:
        raise UsageProblem(
            f"{text!r} is neither a pod, an added host, nor an SSH host of the form "
            "[ssh://][user@]host[:port]",
            "give a Runpod pod id or name, a name from `podtui hosts list`, or an SSH address such "
            "as ssh://root@203.0.113.7:2222",
        )
    return target
