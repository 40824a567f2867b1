"""Tunnel benchmark, one run, side by side: direct, OpenSSH -N -L, OpenSSH -tt -L (pty), podtui.

    .venv/bin/python bench/tunnel.py [--requests 500] [--megabytes 200] [--tokens 128]

Uses the test bed's real parts: a private sshd on loopback, llama-server (CPU build) on the tiny
model, and a small HTTP server in its own process. For each path it measures the p50/p99 latency
of small HTTP requests (each a new TCP connection), the throughput of one bulk transfer, and the
inter-token gaps of a streamed chat completion; then `podtui tunnel`'s start to first byte.
Every forwarder runs in its own process. Figures are printed as ratios against the references.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.testbed import cache, models  # noqa: E402
from tests.testbed.llama import LlamaServer  # noqa: E402
from tests.testbed.procs import free_port, stop_process, wait_for_port  # noqa: E402
from tests.testbed.sshd import SshServer, generate_key  # noqa: E402

PODTUI = str(Path(sys.executable).parent / "podtui")
CHUNK = memoryview(b"x" * (1 << 20))


# -- the upstream HTTP server (run in a child process: `bench/tunnel.py --serve PORT MB`) ---------
def serve(port: int, megabytes: int) -> None:
    import threading

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(256)

    def answer(conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(4096)
                if not data:
                    return
                request += data
            if request.startswith(b"GET /big"):
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % (megabytes << 20))
                for _ in range(megabytes):
                    conn.sendall(CHUNK)
            else:
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=answer, args=(conn,), daemon=True).start()


# -- measurements ---------------------------------------------------------------------------------
def small_requests(port: int, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /small HTTP/1.0\r\n\r\n")
            while s.recv(65536):
                pass
        times.append((time.perf_counter() - start) * 1000)
    return times


def bulk_transfer(port: int, megabytes: int) -> float:
    buffer = bytearray(1 << 20)
    total = 0
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /big HTTP/1.0\r\n\r\n")
        while n := s.recv_into(buffer):
            total += n
    elapsed = time.perf_counter() - start
    if total < megabytes << 20:
        raise RuntimeError(f"bulk transfer got {total} bytes, expected {megabytes} MB")
    return total / elapsed / 1e6


def token_gaps(port: int, tokens: int) -> list[float]:
    body = json.dumps({"messages": [{"role": "user", "content": "Count to a thousand"}], "max_tokens": tokens,
                       "stream": True, "temperature": 0, "ignore_eos": True})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    arrivals = []
    while line := response.readline():
        if line.startswith(b"data: "):
            arrivals.append(time.perf_counter())
    conn.close()
    return [(b - a) * 1000 for a, b in zip(arrivals[1:], arrivals[2:])]  # skip the prompt's wait


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# -- forwarders -----------------------------------------------------------------------------------
def ssh_command(sshd: SshServer, key: Path, known_hosts: Path, forwards: list[str], pty: bool) -> list[str]:
    args = ["ssh", "-tt" if pty else "-N"]
    for forward in forwards:
        args += ["-L", forward]
    args += ["-p", str(sshd.port), "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
             "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
             "-o", "GlobalKnownHostsFile=/dev/null", "root@127.0.0.1"]
    return args + (["sleep infinity"] if pty else [])


def start_podtui(sshd: SshServer, key: Path, env: dict, forwards: list[str]) -> tuple[subprocess.Popen, float]:
    """Start `podtui tunnel`; return it and its start-to-first-byte through the first forward (s)."""
    args = [PODTUI, "tunnel", f"root@127.0.0.1:{sshd.port}", "-i", str(key),
            "--fingerprint", sshd.host_fingerprint, "--json"]
    for forward in forwards:
        args += ["-L", forward]
    local_port = int(forwards[0].split(":")[0])
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"podtui tunnel exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", local_port), timeout=2) as s:
                s.sendall(b"GET /small HTTP/1.0\r\n\r\n")
                if s.recv(1):
                    return proc, time.perf_counter() - start
        except OSError:
            time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--serve", nargs=2, type=int, metavar=("PORT", "MB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return

    work = Path(tempfile.mkdtemp(prefix="podtui-bench-"))
    env = {**os.environ, "PODTUI_CONFIG_DIR": str(work / "podtui"), "SSH_AUTH_SOCK": ""}
    key = generate_key(work / "id_ed25519")
    sshd = SshServer(work / "sshd")
    sshd.authorize(Path(f"{key}.pub"))
    known_hosts = work / "known_hosts"
    procs: list[subprocess.Popen] = []
    llama = LlamaServer(cache.llama_bin_dir(), models.ensure_model(models.TINY_A), log_path=work / "llama.log")
    try:
        sshd.start()
        known_hosts.write_text(sshd.known_hosts_line())
        http_port = free_port()
        procs.append(subprocess.Popen([sys.executable, __file__, "--serve", str(http_port), str(args.megabytes)],
                                      start_new_session=True))
        wait_for_port(http_port, procs[-1])
        llama.start()

        paths: dict[str, tuple[int, int]] = {"direct": (http_port, llama.port)}
        for name, pty in (("ssh -N -L", False), ("ssh -tt -L (pty)", True)):
            lp_http, lp_llama = free_port(), free_port()
            forwards = [f"{lp_http}:127.0.0.1:{http_port}", f"{lp_llama}:127.0.0.1:{llama.port}"]
            procs.append(subprocess.Popen(ssh_command(sshd, key, known_hosts, forwards, pty),
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
            wait_for_port(lp_http, procs[-1])
            paths[name] = (lp_http, lp_llama)

        starts = []
        for _ in range(3):
            lp_http, lp_llama = free_port(), free_port()
            proc, first_byte = start_podtui(sshd, key, env, [f"{lp_http}:127.0.0.1:{http_port}",
                                                             f"{lp_llama}:127.0.0.1:{llama.port}"])
            starts.append(first_byte)
            procs.append(proc)
        paths["podtui tunnel"] = (lp_http, lp_llama)   # the last one stays up for the measurements

        # Interleaved rounds, so that load from other work on the machine hits every path alike.
        latencies = {name: [] for name in paths}
        throughputs = {name: [] for name in paths}
        gaps = {name: [] for name in paths}
        for name, (p_http, _) in paths.items():
            small_requests(p_http, 20)  # warm up
        for _ in range(10):
            for name, (p_http, _) in paths.items():
                latencies[name] += small_requests(p_http, args.requests // 10)
        for _ in range(3):
            for name, (p_http, p_llama) in paths.items():
                throughputs[name].append(bulk_transfer(p_http, args.megabytes))
        for _ in range(2):
            for name, (p_http, p_llama) in paths.items():
                gaps[name] += token_gaps(p_llama, args.tokens // 2)
        results = {}
        for name in paths:
            results[name] = {"p50_ms": pct(latencies[name], 50), "p99_ms": pct(latencies[name], 99),
                             "mb_s": statistics.median(throughputs[name]),
                             "gap_p50_ms": statistics.median(gaps[name]), "gap_p95_ms": pct(gaps[name], 95),
                             "gap_max_ms": max(gaps[name])}
        report(results, starts, args)
    finally:
        for proc in procs:
            stop_process(proc)
        llama.stop()
        sshd.stop()


def report(results: dict, starts: list[float], args) -> None:
    print(f"\n{args.requests} small requests (new TCP connection each, 10 interleaved rounds), "
          f"{args.megabytes} MB bulk (median of 3), gaps of {args.tokens} streamed tokens (2 completions); "
          f"loopback, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}\n")
    print(f"| path | request p50 ms | p99 ms | MB/s | token gap p50 ms | p95 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['mb_s']:.0f} | "
              f"{r['gap_p50_ms']:.2f} | {r['gap_p95_ms']:.2f} | {r['gap_max_ms']:.2f} |")
    ours, plain, pty, direct = (results[k] for k in ("podtui tunnel", "ssh -N -L", "ssh -tt -L (pty)", "direct"))
    checks = [
        ("request p50 vs ssh -N -L", ours["p50_ms"] / plain["p50_ms"], "<= 0.10", ours["p50_ms"] / plain["p50_ms"] <= 0.10),
        ("request p50 vs ssh -tt (pty)", ours["p50_ms"] / pty["p50_ms"], "<= 1.5", ours["p50_ms"] / pty["p50_ms"] <= 1.5),
        ("throughput vs ssh -N -L", ours["mb_s"] / plain["mb_s"], ">= 0.9", ours["mb_s"] / plain["mb_s"] >= 0.9),
        ("throughput vs ssh -tt (pty)", ours["mb_s"] / pty["mb_s"], ">= 0.9", ours["mb_s"] / pty["mb_s"] >= 0.9),
    ]
    print("\n| goal | measured | target | met |\n|---|---|---|---|")
    for name, ratio, target, met in checks:
        print(f"| {name} | {ratio:.3f}x | {target} | {'yes' if met else 'NO'} |")
    delta = ours["gap_p50_ms"] - direct["gap_p50_ms"]
    delta95 = ours["gap_p95_ms"] - direct["gap_p95_ms"]
    print(f"| token gap p50 minus direct | {delta:+.2f} ms | within 1 ms | {'yes' if abs(delta) <= 1 else 'NO'} |")
    print(f"| token gap p95 minus direct | {delta95:+.2f} ms | within 1 ms | {'yes' if abs(delta95) <= 1 else 'NO'} |")
    print(f"| podtui tunnel start to first byte | {', '.join(f'{s:.2f}' for s in starts)} s "
          f"| < 1 s | {'yes' if max(starts) < 1 else 'NO'} |")


if __name__ == "__main__":
    main()
