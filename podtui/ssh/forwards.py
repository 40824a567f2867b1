"""The -L forward syntax: ForwardSpec and parse_forward (OpenSSH `[bind:]lport:rhost:rport`
plus podtui's short `lport[:rport]`). Syntax only; podtui.ssh.tunnel supervises the forwards."""

from __future__ import annotations

import re
from dataclasses import dataclass

from podtui.errors import UsageProblem


@dataclass(frozen=True)
class ForwardSpec:
    """One local forward: listen on bind_host:local_port (0: any free port), connect to
    remote_host:remote_port as seen from the server."""

    bind_host: str
    local_port: int
    remote_host: str
    remote_port: int

    def openssh(self, local_port: int | None = None) -> str:
        """The spec as OpenSSH's -L argument `bind:lport:rhost:rport` (an IPv6 rhost bracketed);
        local_port, when given, replaces the spec's (e.g. the port actually bound for 0)."""
        host = f"[{self.remote_host}]" if ":" in self.remote_host else self.remote_host
        return f"{self.bind_host}:{local_port or self.local_port}:{host}:{self.remote_port}"


def _split_forward(text: str) -> list[str]:
    # Split on ':' outside [brackets] (IPv6 literals are bracketed, as in OpenSSH).
    parts = re.findall(r"\[[^\]]*\]|[^:]+|(?<=:)(?=:)|^(?=:)", text)
    return [p[1:-1] if p.startswith("[") else p for p in parts]


def _port(text: str, what: str, spec: str, allow_zero: bool = False) -> int:
    if not text.isdigit() or not (0 if allow_zero else 1) <= int(text) <= 65535:
        raise UsageProblem(f"-L {spec}: {what} {text!r} is not a port number",
                           "use [bind:]lport:rhost:rport or lport[:rport], ports 1-65535")
    return int(text)


def parse_forward(spec: str, default_remote_host: str = "127.0.0.1") -> ForwardSpec:
    """OpenSSH -L syntax `[bind:]lport:rhost:rport`, plus podtui's short `lport[:rport]`.
    Local port 0 asks the kernel for a free port (the bound one is reported when up). A lone lport
    forwards to the same remote port (5002 for 0); the default bind host is 127.0.0.1, and `*` or an
    empty bind means 0.0.0.0. Raises UsageProblem for a malformed spec or a port out of range."""
    parts = _split_forward(spec.strip())
    if len(parts) == 1:
        port = _port(parts[0], "local port", spec, allow_zero=True)
        return ForwardSpec("127.0.0.1", port, default_remote_host, port or 5002)
    if len(parts) == 2:
        return ForwardSpec("127.0.0.1", _port(parts[0], "local port", spec, True), default_remote_host,
                           _port(parts[1], "remote port", spec))
    if len(parts) == 3:
        bind, (lport, rhost, rport) = "127.0.0.1", parts
    elif len(parts) == 4:
        bind, lport, rhost, rport = parts
        bind = {"*": "0.0.0.0", "": "0.0.0.0", "localhost": "127.0.0.1"}.get(bind, bind)
    else:
        raise UsageProblem(f"-L {spec} has {len(parts)} fields",
                           "use [bind:]lport:rhost:rport or lport[:rport]")
    if not rhost:
        raise UsageProblem(f"-L {spec} names no remote host", "use lport:rhost:rport")
    return ForwardSpec(bind, _port(lport, "local port", spec, True), rhost, _port(rport, "remote port", spec))
