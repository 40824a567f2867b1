"""Bad input on the real socket: every line gets one error, the daemon lives, memory stays bounded."""

from __future__ import annotations

import json
import random
import socket
import threading

import pytest

from remote_agent.protocol import MAX_LINE_BYTES
from tests.testbed.agent_daemon import rss_kib

pytestmark = pytest.mark.timeout(120)

WRONG_TYPES = [
    {"id": 1, "method": "engine.start", "params": {"model": 5}},
    {"id": 1, "method": "engine.start", "params": {}},
    {"id": 1, "method": "engine.swap", "params": {"model": "x.gguf", "ctx": -1}},
    {"id": 1, "method": "engine.swap", "params": {"model": "x.gguf", "ctx": "lots"}},
    {"id": 1, "method": "engine.swap", "params": {"model": "x.gguf", "engine": "vllm"}},
    {"id": 1, "method": "engine.swap", "params": {"model": "x.gguf", "args": [1, 2]}},
    {"id": 1, "method": "logs.tail", "params": {"n": "ten"}},
    {"id": 1, "method": "logs.tail", "params": {"n": 10, "follow": "yes"}},
    {"id": 1, "method": "logs.tail", "params": {"source": "kernel"}},
    {"id": 1, "method": "models.delete", "params": {"name": ""}},
    {"id": 1, "method": "status", "params": {"verbose": True}},
    {"id": 1, "method": "status", "params": [1, 2]},
    {"id": [1], "method": "status"},
    {"id": True, "method": "status"},
    {"id": 1, "method": 42},
    {"id": 1, "method": ""},
    {"id": 1, "method": "engine.explode"},
    {"id": 1},
    {"method": "cancel", "params": {}},
    {"id": 1, "method": "cancel", "params": {"id": None}},
]


def fuzz_lines(count: int, seed: int = 1234) -> list[bytes]:
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        kind = i % 6
        if kind == 0:  # truncated or broken JSON
            text = json.dumps({"id": i, "method": "status"})
            lines.append(text[: rng.randrange(1, len(text) - 1)].encode())
        elif kind == 1:  # binary garbage without newlines
            lines.append(bytes(b for b in rng.randbytes(rng.randrange(1, 300)) if b != 0x0A))
        elif kind == 2:
            lines.append(json.dumps(rng.choice(WRONG_TYPES)).encode())
        elif kind == 3:  # valid JSON, not a request object
            lines.append(json.dumps(rng.choice([[1, 2], "status", 3.5, None, True, {"x": 1}])).encode())
        elif kind == 4:
            lines.append(b"\xff\xfe" + rng.randbytes(20).replace(b"\n", b"."))
        else:
            lines.append(json.dumps({"id": i, "method": f"no.such.{rng.randrange(10**6)}"}).encode())
    for position in (100, 5000, 9000):  # lines far past the limit
        lines[position] = b'{"id": 1, "method": "status", "pad": "' + b"A" * (MAX_LINE_BYTES * 2) + b'"}'
    return lines


def test_ten_thousand_fuzzed_lines_each_get_one_error_and_the_daemon_lives(make_daemon, standin_bin):
    daemon = make_daemon(standin_bin, args=["--no-autostart"])
    rss_before = rss_kib(daemon.proc.pid)
    lines = fuzz_lines(10_000)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(str(daemon.socket))
    reader = sock.makefile("rb")
    assert json.loads(reader.readline())["hello"] == "remote-agent"

    def write_all():
        for line in lines:
            sock.sendall(line + b"\n")

    writer = threading.Thread(target=write_all)
    writer.start()
    replies = [json.loads(reader.readline()) for _ in lines]
    writer.join()

    assert all("error" in reply and reply["error"]["code"] and reply["error"]["message"] for reply in replies)
    codes = {reply["error"]["code"] for reply in replies}
    assert {"bad_json", "bad_request", "bad_params", "unknown_method", "line_too_long"} <= codes
    assert sum(reply["error"]["code"] == "line_too_long" for reply in replies) == 3
    assert daemon.alive()
    # same connection still works, then a fresh one
    sock.sendall(b'{"id": "after", "method": "status"}\n')
    assert json.loads(reader.readline())["result"]["state"] == "stopped"
    sock.close()
    assert daemon.client().result("status")["state"] == "stopped"
    grown_mib = (rss_kib(daemon.proc.pid) - rss_before) / 1024
    assert grown_mib < 30, f"daemon RSS grew by {grown_mib:.1f} MiB"


def test_a_huge_line_is_never_buffered_whole(make_daemon, standin_bin):
    daemon = make_daemon(standin_bin, args=["--no-autostart"])
    rss_before = rss_kib(daemon.proc.pid)
    client = daemon.client()
    chunk = b"B" * (1 << 20)
    for _ in range(64):  # 64 MiB on one line
        client.sock.sendall(chunk)
    client.sock.sendall(b"\n")
    reply = client.read()
    assert reply["error"]["code"] == "line_too_long" and str(64 << 20) in reply["error"]["message"]
    assert (rss_kib(daemon.proc.pid) - rss_before) / 1024 < 20
    assert client.result("status")["state"] == "stopped"
