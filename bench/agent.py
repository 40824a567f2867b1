"""Agent benchmark: RPC round trip over the Unix socket, and hot-swap overhead beyond the engine's
own load time. Prints figures next to a reference run, with ratios.

    .venv/bin/python bench/agent.py [--calls 2000] [--swaps 5]

References: an asyncio echo server on a Unix socket (the floor for any JSON-lines round trip), and
llama-server started directly on the same tiny models until /health answers (the engine's own load
time, which a swap cannot beat). Goals: RPC p50 <= 5 ms; swap overhead <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.testbed.agent_daemon import AgentClient, DaemonProcess  # noqa: E402
from tests.testbed import cache, models  # noqa: E402
from tests.testbed.procs import free_port, stop_process  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def echo_reference(path: Path, calls: int) -> list[float]:
    """Round trips to a bare asyncio line-echo server on a Unix socket (the floor)."""
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def handle(reader, writer):
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
        writer.close()

    async def serve():
        server = await asyncio.start_unix_server(handle, path=str(path))
        ready.set()
        async with server:
            await server.serve_forever()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    ready.wait()
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(path))
    f = sock.makefile("rb")
    times = []
    message = json.dumps({"id": 1, "method": "status"}).encode() + b"\n"
    for _ in range(calls):
        t = time.perf_counter()
        sock.sendall(message)
        f.readline()
        times.append(time.perf_counter() - t)
    sock.close()
    return times


def agent_round_trips(client: AgentClient, calls: int, method: str = "status") -> list[float]:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        client.call(method)
        times.append(time.perf_counter() - t)
    return times


def bridge_round_trips(socket_path: Path, calls: int) -> list[float]:
    bridge = subprocess.Popen([sys.executable, "-m", "remote_agent", "rpc", "--socket", str(socket_path)],
                              cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    bridge.stdout.readline()  # hello
    times = []
    for i in range(calls):
        t = time.perf_counter()
        bridge.stdin.write(json.dumps({"id": i, "method": "status"}).encode() + b"\n")
        bridge.stdin.flush()
        bridge.stdout.readline()
        times.append(time.perf_counter() - t)
    bridge.stdin.close()
    bridge.wait(10)
    return times


def direct_load_time(bin_dir: Path, model: Path, ctx: int) -> float:
    """llama-server started by hand until /health is 200: the engine's own load time."""
    port = free_port()
    t = time.perf_counter()
    proc = subprocess.Popen([str(bin_dir / "llama-server"), "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "--ctx-size", str(ctx)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - t
            except OSError:
                time.sleep(0.01)
    finally:
        stop_process(proc)


def ms(values: list[float], p: float) -> float:
    return percentile(values, p) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--swaps", type=int, default=5)
    parser.add_argument("--ctx", type=int, default=2048)
    options = parser.parse_args()
    bin_dir = cache.llama_bin_dir()
    model_a, model_b = models.ensure_model(models.TINY_A), models.ensure_model(models.TINY_B)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        echo = echo_reference(root / "echo.sock", options.calls)
        daemon = DaemonProcess(root / "agent", bin_dir, env={"MODEL": str(model_a), "CTX": str(options.ctx)})
        (root / "agent").mkdir()
        daemon.start()
        try:
            daemon.wait_for_state({"ready"})
            client = daemon.client()
            agent_round_trips(client, 100)  # warm up
            status = agent_round_trips(client, options.calls)
            bridge = bridge_round_trips(daemon.socket, min(options.calls, 500))

            print(f"RPC round trip over the Unix socket ({options.calls} calls)")
            print(f"  {'':28} {'p50 ms':>8} {'p99 ms':>8}")
            print(f"  {'reference: asyncio echo':28} {ms(echo, 50):8.3f} {ms(echo, 99):8.3f}")
            print(f"  {'agent `status`':28} {ms(status, 50):8.3f} {ms(status, 99):8.3f}"
                  f"   ratio p50 {percentile(status, 50) / percentile(echo, 50):.1f}x")
            print(f"  {'agent via `remote-agent rpc`':28} {ms(bridge, 50):8.3f} {ms(bridge, 99):8.3f}"
                  f"   ratio p50 {percentile(bridge, 50) / percentile(echo, 50):.1f}x")
            verdict = "met" if ms(status, 50) <= 5 else "MISSED"
            print(f"  goal p50 <= 5 ms: {verdict}")

            loads = {m: [direct_load_time(bin_dir, m, options.ctx) for _ in range(options.swaps)]
                     for m in (model_a, model_b)}
            swaps = {model_a: [], model_b: []}
            target = model_b
            for _ in range(2 * options.swaps):
                t = time.perf_counter()
                _, reply = client.call("engine.swap", {"model": str(target), "ctx": options.ctx})
                elapsed = time.perf_counter() - t
                assert "result" in reply, reply
                swaps[target].append(elapsed)
                target = model_a if target == model_b else model_b
            client.close()
        finally:
            daemon.stop()

    print(f"\nHot swap, medians of {options.swaps} (llama-server, tiny models, ctx {options.ctx})")
    print(f"  {'target':8} {'direct load s':>14} {'swap s':>8} {'overhead s':>11} {'ratio':>6}")
    overheads = []
    for name, model in (("tiny-a", model_a), ("tiny-b", model_b)):
        load, swap = statistics.median(loads[model]), statistics.median(swaps[model])
        overheads.append(swap - load)
        print(f"  {name:8} {load:14.3f} {swap:8.3f} {swap - load:11.3f} {swap / load:5.2f}x")
    verdict = "met" if max(overheads) <= 1.0 else "MISSED"
    print(f"  goal overhead <= 1 s: {verdict} (worst {max(overheads):.3f} s; the swap includes the drain "
          "check and stopping the old engine)")


if __name__ == "__main__":
    main()
