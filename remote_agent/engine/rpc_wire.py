"""Two questions about a ggml-rpc-server, asked without harming it.

`listening(port, host)`: is something listening there? Read from /proc/net/tcp{,6}, never by
connecting. ggml-rpc-server serves one client at a time with a backlog of 1 (RPC.md fact 4), so a
probe connection can take the slot llama-server needs. Its exit status means nothing either (0 on
bad flags or a busy port, fact 3). A LISTEN socket on the port is the only sign that it started.

`hello(endpoint, timeout)`: the RPC handshake, which returns the protocol version the server speaks.
It is sent only to a backend that our llama-server is not using (before a start, or while paused),
so it never competes for the single slot. The wire format is ggml-rpc.cpp's at 0c1e57098:
command byte 14 (RPC_CMD_HELLO, fixed across versions), a u64 little-endian size of 24, then 24
zero bytes of transport capabilities (no RDMA). The reply is a u64 size of 28, then major, minor,
patch, a padding byte and 24 capability bytes.

Measured on the test bed's binary (tests/remote_agent/rpc/test_probes.py repeats both):
- connect + close, and HELLO with the whole reply read before closing, did not hurt a server that
  had SIGPIPE at its default. It served llama-server afterwards.
- HELLO, then close without reading the reply, killed that server with SIGPIPE on its next
  send. With SIGPIPE ignored (as the agent starts it) it survived. So hello() always reads the
  whole reply, and stops early only when its deadline passes.
- A frozen server (SIGSTOP) completes the TCP connect through the kernel's backlog but never
  answers HELLO. Only a deadline tells it apart from a live one; a connect alone cannot.

An older server (a HELLO of another size) logs "HELLO request size mismatch" and closes without
a reply: hello() reports that as `closed`. Standard library only.
"""

from __future__ import annotations

import asyncio
import os
import struct
from dataclasses import dataclass
from pathlib import Path

HELLO_CMD = 14
CAPS_SIZE = 24
_REQUEST = struct.pack("<BQ", HELLO_CMD, CAPS_SIZE) + bytes(CAPS_SIZE)
_REPLY_SIZE = 4 + CAPS_SIZE
LISTEN_STATE = "0A"

# Why a backend did not answer the handshake (BackendProbeError.reason).
REFUSED = "refused"  # nothing listens there (or the host cannot be reached at all)
SILENT = "silent"  # accepted the connection but did not answer HELLO within the deadline
CLOSED = "closed"  # closed the connection without a valid reply (another protocol generation)


@dataclass(frozen=True, order=True)
class RpcVersion:
    """An RPC protocol version (ggml-rpc.h RPC_PROTO_*_VERSION)."""
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def serves(self, client: "RpcVersion") -> bool:
        """Whether a client of version client accepts this server: the rule of llama.cpp's
        negotiate_hello, same major and a minor no newer than the client's."""
        return self.major == client.major and self.minor <= client.minor

    @classmethod
    def parse(cls, text: str) -> "RpcVersion":
        """"7.0.0" (or "v7.0.0") → RpcVersion; ValueError otherwise."""
        major, minor, patch = (int(part) for part in text.strip().lstrip("v").split("."))
        return cls(major, minor, patch)


class BackendProbeError(OSError):
    """hello() got no valid answer; reason is REFUSED, SILENT or CLOSED, detail the OS's words."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


async def hello(host: str, port: int, timeout: float) -> RpcVersion:
    """The protocol version the ggml-rpc-server at host:port speaks, after a full handshake within
    timeout seconds (connect included). Raises BackendProbeError (REFUSED, SILENT, CLOSED)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except asyncio.TimeoutError:
        raise BackendProbeError(SILENT, f"no TCP connection within {timeout:g}s") from None
    except OSError as exc:  # asyncio words it "Connect call failed (…)"; the errno says why
        raise BackendProbeError(REFUSED, os.strerror(exc.errno).lower() if exc.errno else str(exc)) from None
    try:
        writer.write(_REQUEST)
        await writer.drain()
        size = struct.unpack("<Q", await asyncio.wait_for(reader.readexactly(8), timeout))[0]
        if size != _REPLY_SIZE:
            raise BackendProbeError(CLOSED, f"a HELLO reply of {size} bytes, not {_REPLY_SIZE}")
        reply = await asyncio.wait_for(reader.readexactly(size), timeout)
        return RpcVersion(reply[0], reply[1], reply[2])
    except asyncio.TimeoutError:
        raise BackendProbeError(SILENT, f"connected, but no answer to the RPC handshake within {timeout:g}s") from None
    except asyncio.IncompleteReadError:
        raise BackendProbeError(CLOSED, "closed the connection during the RPC handshake") from None
    except OSError as exc:
        raise BackendProbeError(CLOSED, exc.strerror or str(exc)) from None
    finally:
        writer.close()


def _entries(table: Path) -> list[tuple[str, int, str]]:
    """(hex local address, port, state) of each socket in a /proc/net/tcp-style table."""
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return []
    entries = []
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and ":" in fields[1]:
            address, port = fields[1].rsplit(":", 1)
            entries.append((address, int(port, 16), fields[3]))
    return entries


def _hex_ipv4(host: str) -> str:
    """127.0.0.1 → "0100007F", /proc/net/tcp's form (the address in host byte order, little-endian here)."""
    return "".join(f"{int(octet):02X}" for octet in reversed(host.split(".")))


def listening(port: int, host: str | None = None, proc_net: Path = Path("/proc/net")) -> bool:
    """Whether a socket listens on port (on host, an IPv4 address, or on every address; host None:
    anywhere), from /proc/net/tcp and tcp6. False where /proc cannot tell. Never connects."""
    wanted = {_hex_ipv4(host), "00000000"} if host else None
    for address, entry_port, state in _entries(proc_net / "tcp"):
        if entry_port == port and state == LISTEN_STATE and (wanted is None or address in wanted):
            return True
    for address, entry_port, state in _entries(proc_net / "tcp6"):
        if entry_port == port and state == LISTEN_STATE and (wanted is None or set(address) == {"0"}):
            return True
    return False
