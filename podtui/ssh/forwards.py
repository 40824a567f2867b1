"""The -L forward syntax: ForwardSpec and parse_forward (OpenSSH `[bind:]lport:rhost:rport`
plus podtui's short `lport[:rport]`), and how a forward is written back: as an OpenSSH -L
argument, an address, a URL, and a warning when it listens beyond loopback. Syntax only;
podtui.ssh.tunnel supervises the forwards.

An IPv6 address is always written in brackets (`[::1]:5002`, `http://[::1]:5002`,
`-L [::1]:5002:127.0.0.1:5002`): unbracketed, curl rejects the URL and ssh misreads the -L fields.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, replace

from podtui.errors import UsageProblem

DEFAULT_REMOTE_PORT = 5002   # the engine port on the pod


def bracketed(host: str) -> str:
    """`[host]` for an IPv6 address (anything with a colon), the host unchanged otherwise."""
    return f"[{host}]" if ":" in host else host


def host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 host bracketed: `127.0.0.1:5002`, `[::1]:5002`."""
    return f"{bracketed(host)}:{port}"


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%")[0])   # without an IPv6 zone id (`%eth0`)
    except ValueError:
        return None   # a host name


@dataclass(frozen=True)
class PublicBindWarning:
    """A forward that listens where other machines can reach it: what, and how to keep it local."""

    local: str      # `0.0.0.0:8080`, `[::]:8080`
    message: str
    fix: str

    def render(self) -> str:
        return f"WARNING: {self.message}\n  to keep it local: {self.fix}"


@dataclass(frozen=True)
class ForwardSpec:
    """One local forward: listen on bind_host:local_port (0: any free port), connect to
    remote_host:remote_port as seen from the server. Hosts are stored without brackets."""

    bind_host: str
    local_port: int
    remote_host: str
    remote_port: int

    def openssh(self, local_port: int | None = None) -> str:
        """The spec as OpenSSH's -L argument `bind:lport:rhost:rport`, any IPv6 host (bind or
        remote) bracketed; local_port, when given, replaces the spec's (e.g. the port actually
        bound for 0)."""
        return f"{self.local_address(local_port)}:{self.remote_address}"

    def local_address(self, local_port: int | None = None) -> str:
        """Where it listens, `bind:port` (`[::1]:5002` for IPv6)."""
        return host_port(self.bind_host, local_port or self.local_port)

    @property
    def remote_address(self) -> str:
        """Where it connects on the server, `host:port` (`[fe80::1]:80` for IPv6)."""
        return host_port(self.remote_host, self.remote_port)

    @property
    def all_interfaces(self) -> bool:
        """True when it listens on every interface (0.0.0.0, ::; `*` and an empty bind parse to 0.0.0.0)."""
        ip = _ip(self.bind_host)
        return ip is not None and ip.is_unspecified

    @property
    def loopback_only(self) -> bool:
        """True when only this machine can connect: a loopback address or `localhost`."""
        if self.bind_host == "localhost":
            return True
        ip = _ip(self.bind_host)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip is not None and ip.is_loopback

    def local_url(self, local_port: int | None = None) -> str:
        """`http://host:port` to reach the forward from this machine: a loopback address when it
        listens on all interfaces (127.0.0.1, or [::1] for ::), otherwise the bind address, IPv6
        bracketed (a zone id written %25 as URLs require)."""
        host = self.bind_host
        if self.all_interfaces:
            host = "::1" if ":" in host else "127.0.0.1"
        return f"http://{bracketed(host.replace('%', '%25'))}:{local_port or self.local_port}"

    def public_bind_warning(self, local_port: int | None = None) -> PublicBindWarning | None:
        """The warning for a forward that listens beyond loopback; None for a loopback-only one."""
        if self.loopback_only:
            return None
        local = self.local_address(local_port)
        port = local_port or self.local_port
        if self.all_interfaces:
            where = (f"listens on all interfaces: the model's API is reachable on port {port} by anyone "
                     "who can reach this machine over the network, not only by you")
        else:
            kind = ("an address that is not loopback" if _ip(self.bind_host)
                    else "a name that may not be loopback")
            where = (f"listens on {kind}: the model's API is reachable at {local} by anyone who can "
                     "reach that address, not only by you")
        return PublicBindWarning(
            local,
            f"the forward {local} -> {self.remote_address} {where}",
            f"drop the bind address (-L {shlex.quote(f'{self.local_port}:{self.remote_address}')}) or "
            f"bind 127.0.0.1 (-L {shlex.quote(replace(self, bind_host='127.0.0.1').openssh())})",
        )


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
    forwards to the same remote port (5002 for 0); the default bind host is 127.0.0.1, `localhost`
    means 127.0.0.1, and `*` or an empty bind means 0.0.0.0. IPv6 addresses go in brackets
    (`[::1]:0:127.0.0.1:5002`). Raises UsageProblem for a malformed spec or a port out of range."""
    parts = _split_forward(spec.strip())
    if len(parts) == 1:
        port = _port(parts[0], "local port", spec, allow_zero=True)
        return ForwardSpec("127.0.0.1", port, default_remote_host, port or DEFAULT_REMOTE_PORT)
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
                           "use [bind:]lport:rhost:rport or lport[:rport]; put an IPv6 address in "
                           "brackets: [::1]:lport:rhost:rport")
    if not rhost:
        raise UsageProblem(f"-L {spec} names no remote host", "use lport:rhost:rport")
    return ForwardSpec(bind, _port(lport, "local port", spec, True), rhost, _port(rport, "remote port", spec))
