"""SSE lines split only at CR, LF and CRLF (remote_agent/sse_lines.py), never at the Unicode line
breaks httpx's iter_lines also splits at; and the serverless worker's seed-001 stream parser on such
a stream, as llama-server sends it."""

from __future__ import annotations

import asyncio
import json

import httpx

from remote_agent.serverless.handler import seed_pieces
from remote_agent.serverless.link import EngineTarget
from remote_agent.sse_lines import asplit_lines, split_lines

# A model can generate U+2028, U+2029 and U+0085; JSON leaves them unescaped.
TEXT = "a\u2028b\u2029c\x85d"
STREAM = "".join(f"data: {json.dumps({'choices': [{'text': t}]}, ensure_ascii=False)}\n\n"
                 for t in (TEXT, "e")) + "data: [DONE]\n\n"


def chunked(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def test_lines_end_only_at_cr_lf_or_crlf_wherever_the_chunks_are_cut():
    for size in (1, 2, 3, 7, 1000):
        lines = list(split_lines(chunked(STREAM, size)))
        assert json.loads(lines[0][len("data: "):])["choices"][0]["text"] == TEXT, size
    # a CRLF cut between two chunks is one line ending, a lone CR is one too, the last line needs none
    assert list(split_lines(["a\r", "\nb\rc\n", "d"])) == ["a", "b", "c", "d"]
    assert list(split_lines(["a\r"])) == ["a"]


def test_httpx_own_line_splitter_would_cut_the_event():
    # why this module exists: the same stream through httpx's decoder (0.28) comes out cut
    response = httpx.Response(200, content=STREAM.encode())
    assert not any(line.startswith("data: ") and line.endswith("}") and "\u2028" in line
                   for line in response.iter_lines())


def test_the_workers_seed_stream_parser_keeps_such_a_piece_whole():
    async def chunks():
        for chunk in chunked(STREAM, 5):
            yield chunk

    async def pieces():
        target = EngineTarget("http://127.0.0.1:1", "llama-server")
        return [piece async for piece in seed_pieces(asplit_lines(chunks()), target)]

    assert asyncio.run(pieces()) == [TEXT, "e"]
