"""The lines of a text/event-stream, split only where the SSE spec ends a line: CR, LF or CRLF.

httpx 0.28's `iter_lines`/`aiter_lines` split like `str.splitlines()`, also at U+0085, U+2028 and
U+2029, which JSON does not escape: a model that generates one of them (a random-weight test model
did, and cut a `data: {"choices":[{"text":"…` event in two) breaks every SSE reader built on them.
podtui's readers of Runpod's and the engines' streams use these instead. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

_EOL = re.compile(r"\r\n|\r|\n")


def _cut(buffer: str, final: bool) -> tuple[list[str], str]:
    """The complete lines in buffer and what is left; a CR at the very end waits for the next chunk
    (it may be the first half of a CRLF) unless final."""
    lines, start = [], 0
    for match in _EOL.finditer(buffer):
        if match.group() == "\r" and match.end() == len(buffer) and not final:
            break
        lines.append(buffer[start:match.start()])
        start = match.end()
    return lines, buffer[start:]


def split_lines(chunks: Iterable[str]) -> Iterator[str]:
    """Lines (without their ending) from text chunks cut anywhere, the last one even without an ending."""
    rest = ""
    for chunk in chunks:
        lines, rest = _cut(rest + chunk, final=False)
        yield from lines
    lines, rest = _cut(rest, final=True)
    yield from lines
    if rest:
        yield rest


async def asplit_lines(chunks: AsyncIterable[str]) -> AsyncIterator[str]:
    """split_lines for an async stream of text chunks (httpx's `aiter_text()`)."""
    rest = ""
    async for chunk in chunks:
        lines, rest = _cut(rest + chunk, final=False)
        for line in lines:
            yield line
    lines, rest = _cut(rest, final=True)
    for line in lines:
        yield line
    if rest:
        yield rest
