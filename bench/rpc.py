"""RPC cluster benchmark, one run, side by side (issue 18): tokens/s of the tiny model served by

  local     llama-server alone
  direct    llama-server --rpc over two ggml-rpc-servers on loopback
  links     the same through podtui's links: the exact ssh command and authorized_keys line the
            server's agent uses (remote_agent/links), through two real sshds on loopback
  ssh -N    the same through `ssh -N -L` links (the naive way: no session, no TCP_NODELAY)

and the second start's load time (and the bytes llama-server sent the backends, counted by a relay) with and without
the backends' `-c` tensor cache.

    .venv/bin/python bench/rpc.py [--tokens 64] [--runs 5]

Figures come from llama-server's own `timings.predicted_per_second` (median of the runs) and are
printed as ratios against direct RPC. Goal: links ≥ 0.8× direct. Everything binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from remote_agent.engine.rpc_wire import listening  # noqa: E402
from remote_agent.links.authorized import key_line  # noqa: E402
from remote_agent.links.command import naive_command, ssh_command  # noqa: E402
from remote_agent.links.spec import parse_links  # noqa: E402
from tests.testbed import cache, models  # noqa: E402
from tests.testbed.procs import free_port, stop_process  # noqa: E402
from tests.testbed.sshd import SshServer, generate_key  # noqa: E402


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def start_backend(bin_dir: Path, port: int, cache_dir: Path | None) -> subprocess.Popen:
    args = ["stdbuf", "-oL", str(bin_dir / "ggml-rpc-server"), "-H", "127.0.0.1", "-p", str(port),
            *(["-c"] if cache_dir else [])]
    env = {**os.environ, **({"LLAMA_CACHE": str(cache_dir)} if cache_dir else {})}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            restore_signals=False, start_new_session=True)  # SIGPIPE ignored (RPC.md fact 5)
    wait(lambda: listening(port, "127.0.0.1"), 20, "ggml-rpc-server listening")
    return proc


def start_server(bin_dir: Path, model: Path, rpc: list[str] | None) -> tuple[subprocess.Popen, int, float, int]:
    """llama-server (with --rpc when given): (proc, port, seconds to /health 200, bytes written by then)."""
    port = free_port()
    args = [str(bin_dir / "llama-server"), "-m", str(model), "-c", "1024", "--host", "127.0.0.1", "--port", str(port),
            "-t", "2", "-ngl", "99" if rpc else "0", *(["--rpc", ",".join(rpc)] if rpc else [])]
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    wait(healthy, 120, "llama-server healthy")
    load_s = time.monotonic() - started
    written = int(next(l.split()[1] for l in Path(f"/proc/{proc.pid}/io").read_text().splitlines()
                       if l.startswith("wchar:")))
    return proc, port, load_s, written


def tokens_per_s(port: int, tokens: int, runs: int) -> float:
    body = json.dumps({"prompt": "Once upon a time", "n_predict": tokens, "temperature": 0, "ignore_eos": True,
                       "cache_prompt": False}).encode()
    rates = []
    for _ in range(runs + 1):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/completion", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as reply:
            rates.append(json.load(reply)["timings"]["predicted_per_second"])
    return statistics.median(rates)


class CountingRelay:
    """A loopback TCP relay counting the bytes llama-server sends a backend (the load's weights)."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(32)
        self.port = self.listener.getsockname()[1]
        self.sent = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b, count in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(a, b, count), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        while True:
            try:
                data = src.recv(1 << 16)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return
            if count:
                self.sent += len(data)

    def close(self) -> None:
        self.listener.close()


class Links:
    """Two links to the backends' sshds, built as the server's agent builds them."""

    def __init__(self, work: Path, rpc_ports: list[int]) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.client_key = generate_key(work / "cluster_key")
        public = Path(f"{self.client_key}.pub").read_text()
        self.sshds, specs, known = [], [], ""
        for i, rpc_port in enumerate(rpc_ports):
            sshd = SshServer(work / f"sshd{i}").start()
            sshd.authorized_keys.write_text(key_line(public, "127.0.0.1", rpc_port) + "\n")
            self.sshds.append(sshd)
            specs.append({"name": f"b{i}", "endpoint": f"127.0.0.1:{free_port()}", "host": "127.0.0.1",
                          "port": sshd.port, "user": "root", "rpc_port": rpc_port, "host_key_alias": f"b{i}"})
            known += f"b{i} {sshd.host_public_key}\n"
        self.known_hosts = work / "known_hosts"
        self.known_hosts.write_text(known)
        self.specs, _, _ = parse_links({"links": specs, "known_hosts": known,
                                        "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----"})

    def up(self, naive: bool) -> list[subprocess.Popen]:
        build = naive_command if naive else ssh_command
        procs = [subprocess.Popen(build(spec, self.client_key, self.known_hosts), stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
                 for spec in self.specs]
        for spec, proc in zip(self.specs, procs):
            def ready(proc: subprocess.Popen = proc, spec=spec) -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"link ended: {proc.stderr.read().decode(errors='replace')}")
                return listening(spec.local_port, "127.0.0.1")
            wait(ready, 20, "link listening")
        return procs

    @property
    def endpoints(self) -> list[str]:
        return [spec.endpoint for spec in self.specs]

    def close(self) -> None:
        for sshd in self.sshds:
            sshd.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=9)
    options = parser.parse_args()
    bin_dir, model = cache.llama_bin_dir(), models.ensure_model(models.TINY_A)
    rows: dict[str, float] = {}
    loads: dict[str, tuple[float, int]] = {}
    procs: list[subprocess.Popen] = []
    links: list[Links] = []
    with tempfile.TemporaryDirectory(prefix="bench-rpc-") as tmp:
        work = Path(tmp)
        try:
            # Each path gets its own pair of backends (a backend serves one client) and its own
            # llama-server, all up at once; one completion per path in turn, so the shared
            # machine's drift falls on every path alike.
            pairs = [[free_port(), free_port()] for _ in range(3)]
            procs += [start_backend(bin_dir, port, None) for pair in pairs for port in pair]
            endpoints = {"local llama-server": None, "direct RPC (2 backends)": [f"127.0.0.1:{p}" for p in pairs[0]]}
            for label, pair, naive in (("podtui links", pairs[1], False), ("ssh -N links", pairs[2], True)):
                links.append(Links(work / label.split()[0].replace("-", ""), pair))
                procs += links[-1].up(naive)
                endpoints[label] = links[-1].endpoints
            servers = {}
            for label, rpc in endpoints.items():
                proc, port, _, _ = start_server(bin_dir, model, rpc)
                procs.append(proc)
                servers[label] = port
            rates: dict[str, list[float]] = {label: [] for label in servers}
            for label, port in servers.items():
                tokens_per_s(port, options.tokens, 0)  # warm-up
            for _ in range(options.runs):
                for label, port in servers.items():
                    rates[label].append(tokens_per_s(port, options.tokens, 0))
            rows = {label: statistics.median(values) for label, values in rates.items()}
            for proc in procs:
                stop_process(proc)
            procs = []
            ports = pairs[0]
            for label, cached in (("without -c", False), ("with -c", True)):
                backends = [start_backend(bin_dir, port, work / f"cache{i}" if cached else None)
                            for i, port in enumerate(ports)]
                procs += backends
                for attempt in (1, 2):
                    relays = [CountingRelay(port) for port in ports]
                    proc, _, load_s, _ = start_server(bin_dir, model, [f"127.0.0.1:{r.port}" for r in relays])
                    stop_process(proc)
                    for relay in relays:
                        relay.close()
                    if attempt == 2:
                        loads[label] = (load_s, sum(relay.sent for relay in relays))
                for proc in backends:
                    stop_process(proc)
        finally:
            for proc in procs:
                stop_process(proc)
            for link in links:
                link.close()
    reference = rows["direct RPC (2 backends)"]
    print(f"tiny model ({model.name}), {options.tokens} tokens, median of {options.runs} runs, CPU, loopback")
    print(f"{'path':<26}{'tokens/s':>10}{'× direct':>10}")
    for label, rate in rows.items():
        print(f"{label:<26}{rate:>10.1f}{rate / reference:>10.2f}")
    ratio = rows["podtui links"] / reference
    print(f"goal podtui links ≥ 0.80× direct: {'met' if ratio >= 0.8 else 'MISSED'} ({ratio:.2f}×)")
    print(f"{'second start (direct)':<26}{'load s':>10}{'MB sent':>12}   (model file {model.stat().st_size / 1e6:.1f} MB)")
    for label, (load_s, written) in loads.items():
        print(f"{label:<26}{load_s:>10.2f}{written / 1e6:>12.1f}")


if __name__ == "__main__":
    main()
