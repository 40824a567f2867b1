"""What `cluster.link` carries, checked before anything is written or started.

params = {"links": [{"name": "backend-a", "endpoint": "127.0.0.1:60151", "host": "203.0.113.7",
                     "port": 22, "user": "root", "rpc_port": 50052, "host_key_alias": "podtui-abc"}, …],
          "known_hosts": "podtui-abc ssh-ed25519 AAAA…\\n…",   # the backends' pins, verified by podtui
          "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----…"}  # the cluster key, never logged

endpoint is where the server's llama-server reaches the backend (an APP_RPC_BACKENDS entry); a link
must listen there, so it must be 127.0.0.1:PORT. host/port is the backend's sshd as the server pod
reaches it; host_key_alias the name its pin has in known_hosts (ssh's HostKeyAlias), so the pin holds
whatever address the server pod uses.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from remote_agent.protocol import BAD_PARAMS, WireError

LOOPBACK = "127.0.0.1"
_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$")  # a name or IPv4; nothing ssh would read as an option
_ALIAS = re.compile(r"^[A-Za-z0-9._:\[\]-]{1,200}$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
MAX_LINKS = 15  # llama.cpp takes at most 15 backends (engine/roles.MAX_BACKENDS)
MAX_KEY_BYTES = 16_384


class LinkParamError(WireError):
    """cluster.link params that cannot make a link; the message names the field and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(BAD_PARAMS, f"cluster.link: {message}")


@dataclass(frozen=True)
class LinkSpec:
    """One link: name (the backend, for messages), endpoint (127.0.0.1:LOCAL, where it listens on
    the server pod), host/port/user (the backend's sshd), rpc_port (its ggml-rpc-server on its
    loopback), host_key_alias (the pin's name in the links' known_hosts)."""
    name: str
    endpoint: str
    host: str
    port: int
    user: str
    rpc_port: int
    host_key_alias: str

    @property
    def local_port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def to_dict(self) -> dict:
        return asdict(self)


def _port(value: Any, field: str, index: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise LinkParamError(f"links[{index}].{field} must be a port from 1 to 65535")
    return value


def _text(item: dict, field: str, pattern: re.Pattern, index: int, what: str) -> str:
    value = item.get(field)
    if not isinstance(value, str) or not pattern.match(value) or value.startswith("-"):
        raise LinkParamError(f"links[{index}].{field} must be {what}")
    return value


def parse_link(item: Any, index: int) -> LinkSpec:
    """One entry of params.links → LinkSpec. Raises LinkParamError naming the field."""
    if not isinstance(item, dict):
        raise LinkParamError(f"links[{index}] must be an object with name, endpoint, host, port, user, rpc_port")
    unknown = sorted(set(item) - {"name", "endpoint", "host", "port", "user", "rpc_port", "host_key_alias"})
    if unknown:
        raise LinkParamError(f"links[{index}] has unknown field(s) {', '.join(unknown)}")
    endpoint = item.get("endpoint")
    host, _, local = endpoint.rpartition(":") if isinstance(endpoint, str) else ("", "", "")
    if host != LOOPBACK or not local.isdigit():
        raise LinkParamError(f"links[{index}].endpoint must be {LOOPBACK}:PORT, an APP_RPC_BACKENDS entry on this "
                             "pod's loopback (a link listens there and nowhere else)")
    _port(int(local), "endpoint port", index)
    name = _text(item, "name", _NAME, index, "a short name (letters, digits, . _ - @)")
    return LinkSpec(name=name, endpoint=endpoint,
                    host=_text(item, "host", _HOST, index, "a host name or IPv4 address"),
                    port=_port(item.get("port", 22), "port", index),
                    user=_text(item, "user", _USER, index, "a login name"),
                    rpc_port=_port(item.get("rpc_port", 50052), "rpc_port", index),
                    host_key_alias=_text(item, "host_key_alias", _ALIAS, index,
                                         "the backend's name in known_hosts"))


def parse_links(params: dict) -> tuple[tuple[LinkSpec, ...], str, str]:
    """params of cluster.link → (links, known_hosts text, private key text). Raises LinkParamError."""
    raw = params.get("links")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_LINKS:
        raise LinkParamError(f"links must be a list of 1 to {MAX_LINKS} backends")
    links = tuple(parse_link(item, i) for i, item in enumerate(raw))
    for field in ("endpoint", "name"):
        values = [getattr(link, field) for link in links]
        if len(set(values)) != len(values):
            raise LinkParamError(f"two links have the same {field}; each backend once")
    known_hosts, key = params.get("known_hosts"), params.get("private_key")
    if not isinstance(known_hosts, str) or not known_hosts.strip() or len(known_hosts) > MAX_KEY_BYTES * MAX_LINKS:
        raise LinkParamError("known_hosts must be the backends' pinned host keys, one known_hosts line each")
    names = {line.split()[0] for line in known_hosts.splitlines() if line.strip() and not line.startswith("#")}
    missing = [link.name for link in links if link.host_key_alias not in names]
    if missing:
        raise LinkParamError(f"known_hosts has no pinned key for {', '.join(missing)}; podtui sends every "
                             "backend's verified host key (nothing is trusted on first use)")
    if not isinstance(key, str) or "PRIVATE KEY" not in key or len(key) > MAX_KEY_BYTES:
        raise LinkParamError("private_key must be the cluster's OpenSSH private key")
    return links, known_hosts, key
