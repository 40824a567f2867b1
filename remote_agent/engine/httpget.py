"""A minimal asyncio HTTP/1.0 GET for health and slot probes on loopback (standard library only)."""

from __future__ import annotations

import asyncio

MAX_BODY = 1 << 20


async def http_get(port: int, path: str, timeout: float = 1.0, host: str = "127.0.0.1",
                   headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """(status, body) of GET http://host:port/path with extra headers (the engine's key: see
    engine_key.auth_headers); raises OSError / asyncio.TimeoutError."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())

    async def fetch() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n{extra}Connection: close\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read(MAX_BODY)
            while len(raw) < MAX_BODY:
                more = await reader.read(MAX_BODY - len(raw))
                if not more:
                    break
                raw += more
        finally:
            writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].split()
        if len(status_line) < 2 or not status_line[1].isdigit():
            raise OSError(f"not an HTTP response from 127.0.0.1:{port}{path}")
        return int(status_line[1]), body

    return await asyncio.wait_for(fetch(), timeout)


async def port_is_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Whether a TCP connect to host:port succeeds within timeout seconds; never raises."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True
