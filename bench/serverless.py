"""`podtui serve` benchmark, one run, side by side: through podtui serve vs a client calling the endpoint directly.

    .venv/bin/python bench/serverless.py [--requests 60] [--cold-start 20] [--head-start 15] [--skip-worker]

Uses the test bed's real parts on loopback: llama-server (CPU build) on the tiny model, the runpod
SDK worker (remote-agent serverless-worker, unmodified SDK loop) and the platform DOUBLE of a
serverless endpoint (tests/testbed/runpod_platform.py: not Runpod; its cold start is a sleep before
the worker process starts, and the worker's own ~2 s start-up comes on top).

1. Warm first-token latency: a streamed chat completion (httpx, a new connection each time as a chat
   client opening a conversation would) through `podtui serve` vs straight to the double's
   /openai/v1, interleaved; goal: serve adds at most 5 ms (the median of the paired differences).
   The same against a stand-in that answers at once (in its own process) shows serve's own cost
   without the double's and the SDK worker's jitter.
2. Cold start: with a simulated 20 s cold start, the wait a user sees for the first token of their
   first request when `podtui serve` was started 15 s earlier (it sent the wake job at start) vs a
   plain client that sends the same request to the cold endpoint; goal: at most 25 % of it.
3. When bench/serverless_worker.py exists (the worker's own figures), it runs too, unless --skip-worker.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from tests.testbed import cache, models  # noqa: E402
from tests.testbed.llama import LlamaServer  # noqa: E402
from tests.testbed.procs import free_port, stop_process, wait_for_port  # noqa: E402
from tests.testbed.runpod_platform import PlatformDouble  # noqa: E402
from tests.testbed.sdk_worker import sdk_worker_factory, start_sdk_worker  # noqa: E402

PODTUI = str(Path(sys.executable).parent / "podtui")
RUNPOD_KEY = "rpa_BENCH_not-a-real-key_0123456789"
# one client, no kept-alive connections: every request opens a new one, without paying for a new client
# (an httpx.Client loads an SSL context, ~20 ms, even for http URLs)
CLIENT = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))
BODY = {"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "stream": True}


def constant_upstream(port: int) -> None:
    """A STAND-IN for the runtime's /openai route (not Runpod, not the double): it answers every POST at
    once with one SSE token and [DONE], so client → serve → it, against client → it, shows what
    podtui serve itself adds without the double's and the SDK's jitter. Runs in its own process."""
    import socket as socketlib
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    chunk = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(chunk)))
            self.end_headers()
            try:
                self.wfile.write(chunk)
            except OSError:
                pass

        def do_GET(self) -> None:   # /health and /status for serve's watch: an idle, warm endpoint
            body = b'{"jobs":{},"workers":{"idle":1}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.socket.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_REUSEADDR, 1)
    server.serve_forever()


def first_token_s(url: str, key: str, timeout: float = 300.0) -> float:
    """Seconds from sending a streamed chat completion to its first content chunk (new connection)."""
    started = time.perf_counter()
    with CLIENT.stream("POST", url, json=BODY, headers={"Authorization": f"Bearer {key}"}, timeout=timeout) as reply:
        if reply.status_code != 200:
            raise RuntimeError(f"HTTP {reply.status_code} from {url}: {reply.read()[:200]!r}")
        lines = reply.iter_lines()
        for line in lines:
            if line.startswith("data: ") and '"content"' in line and line.strip() != "data: [DONE]":
                chunk = json.loads(line[6:])
                if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
                    elapsed = time.perf_counter() - started
                    for _ in lines:   # drain, so the next job does not queue behind this one
                        pass
                    return elapsed
    raise RuntimeError("the stream ended without a token")


def serve_env(base_url: str, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "PODTUI_"))}
    env.update({"HOME": str(home), "PODTUI_CONFIG_DIR": str(home / "cfg"), "PODTUI_STATE_DIR": str(home / "state"),
                "RUNPOD_API_KEY": RUNPOD_KEY, "PODTUI_RUNPOD_RUNTIME_URL": f"{base_url}/v2",
                "PODTUI_RUNPOD_API_URL": f"http://127.0.0.1:{free_port()}"})   # no REST: no price, no traffic out
    return env


def start_serve(base_url: str, endpoint_id: str, home: Path, *args: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([PODTUI, "serve", endpoint_id, "-p", "0", "--json", *args],
                            env=serve_env(base_url, home), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"podtui serve exited with {proc.wait(10)}")
    return proc, json.loads(line)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def warm(server: LlamaServer, home: Path, requests: int) -> dict:
    with PlatformDouble("bench", RUNPOD_KEY, idle_timeout_s=3600) as platform:
        # 4 job slots: with 1 the SDK's fetch loop sleeps 1 s after each job (SERVERLESS.md §1.5), noise
        # that would drown the few milliseconds measured here
        worker = start_sdk_worker(platform.worker_env("w1"), server.port, concurrency=4,
                                  log_path=home / "warm-worker.log")
        proc = None
        try:
            worker.wait_ready(platform, timeout_s=60)
            proc, info = start_serve(platform.base_url, platform.endpoint_id, home, "--no-keep-warm")
            # warm both paths (imports, connection pools, the engine's cache) 3 times
            return interleaved(f"{platform.runtime_url}/openai/v1/chat/completions", info, 3, requests)
        finally:
            if proc is not None:
                stop_process(proc)
            worker.stop()


def interleaved(direct_url: str, info: dict, warmups: int, requests: int) -> dict:
    """First-token times in ms, straight to direct_url (the Runpod key) and through serve (info: its
    base_url and api_key), taken in turns after warmups untimed pairs: {"direct": [...], "serve": [...]}."""
    serve_url = f"{info['base_url']}/chat/completions"
    for _ in range(warmups):
        first_token_s(direct_url, RUNPOD_KEY)
        first_token_s(serve_url, info["api_key"])
    direct, served = [], []
    for _ in range(requests):
        direct.append(first_token_s(direct_url, RUNPOD_KEY) * 1000)
        served.append(first_token_s(serve_url, info["api_key"]) * 1000)
    return {"direct": direct, "serve": served}


def overhead(home: Path, requests: int) -> dict:
    """First token through serve vs straight from constant_upstream (a stand-in), interleaved."""
    port = free_port()
    upstream = subprocess.Popen([sys.executable, __file__, "--upstream", str(port)], start_new_session=True)
    proc = None
    try:
        wait_for_port(port, upstream)
        proc, info = start_serve(f"http://127.0.0.1:{port}", "standin", home, "--no-keep-warm")
        return interleaved(f"http://127.0.0.1:{port}/v2/standin/openai/v1/chat/completions", info, 5, requests)
    finally:
        if proc is not None:
            stop_process(proc)
        stop_process(upstream)


def cold_wait(server: LlamaServer, home: Path, cold_start_s: float, head_start_s: float | None) -> float:
    """Seconds the user waits for the first token on a cold endpoint: a plain client (head_start_s
    None) sends at once; otherwise podtui serve starts, and the request goes through it head_start_s later."""
    factory = sdk_worker_factory(server.port, log_dir=home / f"cold-{head_start_s}", concurrency=4)
    with PlatformDouble("bench", RUNPOD_KEY, worker_factory=factory, cold_start_s=cold_start_s,
                        idle_timeout_s=600) as platform:
        if head_start_s is None:
            return first_token_s(f"{platform.runtime_url}/openai/v1/chat/completions", RUNPOD_KEY)
        proc, info = start_serve(platform.base_url, platform.endpoint_id, home, "--no-keep-warm")
        try:
            time.sleep(head_start_s)
            return first_token_s(f"{info['base_url']}/chat/completions", info["api_key"])
        finally:
            stop_process(proc)


def worker_bench(skip: bool) -> str | None:
    script = REPO / "bench" / "serverless_worker.py"
    if skip or not script.exists():
        return None
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=60, help="streamed requests per path (warm)")
    parser.add_argument("--cold-start", type=float, default=20.0, help="the double's simulated cold start, s")
    parser.add_argument("--head-start", type=float, default=15.0, help="how long serve runs before the request, s")
    parser.add_argument("--skip-worker", action="store_true", help="do not run bench/serverless_worker.py")
    parser.add_argument("--upstream", type=int, default=None, help=argparse.SUPPRESS)   # the stand-in's process
    args = parser.parse_args()
    if args.upstream is not None:
        constant_upstream(args.upstream)
        return
    server = LlamaServer(cache.llama_bin_dir(), models.ensure_model(models.TINY_A), extra_args=("--parallel", "4"))
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-serverless-") as tmp:
            home = Path(tmp)
            own_ms = overhead(home, args.requests)
            warm_ms = warm(server, home, args.requests)
            plain = cold_wait(server, home, args.cold_start, None)
            through = cold_wait(server, home, args.cold_start, args.head_start)
    finally:
        server.stop()
    extra = worker_bench(args.skip_worker)
    report(warm_ms, own_ms, plain, through, args, worker_goals(extra or ""))
    if extra is not None:
        print("\nbench/serverless_worker.py (the worker's own figures, same machine, same run):\n")
        print(extra.rstrip())


def worker_goals(output: str) -> dict:
    """The `{"goals": {...}}` JSON line bench/serverless_worker.py may print last: figure → {model: value}."""
    for line in reversed(output.splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("goals"), dict):
            return data["goals"]
    return {}


def report(warm_ms: dict, own_ms: dict, plain: float, through: float, args, worker: dict) -> None:
    print(f"\nwarm endpoint, {args.requests} streamed chat completions per path, interleaved, new connection each")
    print("| path | first token p50 ms | p90 ms | min ms | max ms |\n|---|---|---|---|---|")
    for name, key in (("client → endpoint (the double's /openai/v1)", "direct"),
                      ("client → podtui serve → endpoint", "serve")):
        values = warm_ms[key]
        print(f"| {name} | {statistics.median(values):.2f} | {pct(values, 0.9):.2f} | {min(values):.2f} | "
              f"{max(values):.2f} |")
    own = [s - d for s, d in zip(own_ms["serve"], own_ms["direct"])]
    print(f"| client → a stand-in answering at once (serve's own cost, below) | {statistics.median(own_ms['direct']):.2f} | "
          f"{pct(own_ms['direct'], 0.9):.2f} | {min(own_ms['direct']):.2f} | {max(own_ms['direct']):.2f} |")
    print(f"| client → podtui serve → the stand-in | {statistics.median(own_ms['serve']):.2f} | "
          f"{pct(own_ms['serve'], 0.9):.2f} | {min(own_ms['serve']):.2f} | {max(own_ms['serve']):.2f} |")
    # paired: each serve request against the direct one sent just before it, so the double's and the
    # SDK's own drift (tens of ms between requests) cancels out of the difference
    deltas = [s - d for s, d in zip(warm_ms["serve"], warm_ms["direct"])]
    delta = statistics.median(deltas)
    ratio = through / plain
    print(f"\ncold endpoint ({args.cold_start:g} s simulated cold start + the worker's own start-up)")
    print("| client | wait for the first token s |\n|---|---|")
    print(f"| plain client, request sent to the cold endpoint | {plain:.2f} |")
    print(f"| through podtui serve started {args.head_start:g} s before the request | {through:.2f} |")
    print("\n| goal | measured | target | met |\n|---|---|---|---|")
    print(f"| first token through serve minus direct (median of {len(deltas)} paired differences; "
          f"p25 {pct(deltas, 0.25):+.2f}, p75 {pct(deltas, 0.75):+.2f}) | {delta:+.2f} ms | ≤ +5 ms | "
          f"{'yes' if delta <= 5 else 'NO'} |")
    print(f"| (serve's own cost: the same against the stand-in; p25 {pct(own, 0.25):+.2f}, p75 {pct(own, 0.75):+.2f}) "
          f"| {statistics.median(own):+.2f} ms | | |")
    print(f"| first-request wait through serve / plain client | {ratio:.1%} | ≤ 25 % | {'yes' if ratio <= 0.25 else 'NO'} |")
    for model, delta in sorted((worker.get("token_gap_p50_delta_ms") or {}).items()):
        print(f"| worker token gap p50 minus engine direct ({model}) | {delta:+.2f} ms | within 1 ms | "
              f"{'yes' if abs(delta) <= 1 else 'NO'} |")
    for model, speedup in sorted((worker.get("concurrency_speedup") or {}).items()):
        print(f"| 4 concurrent jobs vs 4 sequential, worker ({model}) | {speedup:.2f}x | ≥ 2x | "
              f"{'yes' if speedup >= 2 else 'NO'} |")
    if not worker and not args.skip_worker:
        print("| the worker's goals (token gaps, concurrency) | see bench/serverless_worker.py's tables below | | |")


if __name__ == "__main__":
    main()
