"""Read newline-framed lines without ever holding more than `limit` bytes of one line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

CHUNK = 64 * 1024


@dataclass(frozen=True)
class OverlongLine:
    """Stands in for a line longer than the limit, whose bytes were discarded as they arrived."""

    size: int


async def bounded_lines(reader: asyncio.StreamReader, limit: int) -> AsyncIterator[bytes | OverlongLine]:
    """Lines from reader without their newline; a line longer than limit bytes is discarded as it
    arrives and yielded as OverlongLine(size). A last line without a newline is yielded at EOF."""
    buffer = bytearray()
    discarded = 0  # > 0 while skipping the rest of an overlong line
    while True:
        chunk = await reader.read(CHUNK)
        if not chunk:
            if discarded:
                yield OverlongLine(discarded)
            elif buffer:
                yield bytes(buffer)
            return
        start = 0
        while start <= len(chunk):
            newline = chunk.find(b"\n", start)
            piece = chunk[start:] if newline < 0 else chunk[start:newline]
            if discarded:
                discarded += len(piece)
            else:
                buffer += piece
                if len(buffer) > limit:
                    discarded = len(buffer)
                    buffer.clear()
            if newline < 0:
                break
            if discarded:
                yield OverlongLine(discarded)
                discarded = 0
            else:
                line = bytes(buffer).removesuffix(b"\r")
                buffer.clear()
                yield line
            start = newline + 1
