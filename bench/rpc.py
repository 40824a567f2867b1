"""RPC cluster benchmark, one run, side by side (issue 18): tokens/s of a model served by

  local     llama-server alone
  direct    llama-server --rpc over two ggml-rpc-servers on loopback
  links     the same through podtui's links: the exact ssh command and authorized_keys line the
            server's agent uses (remote_agent/links), through two real sshds on loopback
  ssh -N    the same through `ssh -N -L` links (the naive way: no session, no TCP_NODELAY)

for two models: the test bed's tiny one (1.0-1.3 ms tokens, the harshest case for a link) and a
bigger random-weight one (BIG below, ~470 MB F32, tokens of tens of ms: what a real model looks like
to the link), and the second start's load time (and the bytes llama-server sent the backends, counted
by a relay) with and without the backends' `-c` tensor cache, on BIG: ggml-rpc-server caches only
tensors over 10 MiB (RPC.md §2.3), which the tiny model does not have.

    .venv/bin/python bench/rpc.py [--tokens 64] [--runs 9] [--models tiny,big] [--budget-s 900]
        [--server-threads 2] [--pin] [--ssh-option Ciphers=aes128-gcm@openssh.com]

--pin puts llama-server and the backends on CPU 0 and every ssh and sshd on CPU 1 (with one
llama-server thread), to tell the link's own cost from contention on a 2-core machine.
--ssh-option adds `-o NAME=VALUE` to podtui's links (to try an OpenSSH setting).

Figures come from llama-server's own `timings.predicted_per_second` (median of the runs) and are
printed as ratios against direct RPC. Goal: links ≥ 0.8× direct. Everything binds 127.0.0.1; rounds
stop when --budget-s is spent (the table says how many ran).
"""

from __future__ import annotations

import argparse
import json
import os
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

from remote_agent.engine.rpc_wire import listening
from remote_agent.links.authorized import key_line, session_command
from remote_agent.links.command import naive_command, ssh_command
from remote_agent.links.spec import parse_links
from tests.testbed import cache, models
from tests.testbed.procs import free_port, stop_process
from tests.testbed.sshd import SshServer, generate_key

# A model with tensors over ggml-rpc-server's 10 MiB cache threshold: ffn_* are 2816×1024×4 B = 11.5 MB
# and output.weight 32000×1024×4 B = 131 MB (token_embd stays on the server's CPU). Written once into the
# test bed's cache (tests/testbed/cache.py), never into git.
BIG = models.TinyModelSpec("bench-rpc-big", seed=31, n_embd=1024, n_layer=4, n_head=8, n_head_kv=8, n_ff=2816)
COMPUTE_CPU, LINK_CPU = 0, 1  # --pin


def pinned(argv: list[str], cpu: int | None) -> list[str]:
    """argv under `taskset -c cpu` (cpu None: as is)."""
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else argv


def big_model() -> Path:
    """BIG's file, written on first use (about 470 MB, 10-30 s)."""
    return models.ensure_model(BIG, cache.cache_root() / "bench-models")


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def start_backend(bin_dir: Path, port: int, cache_dir: Path | None, cpu: int | None = None) -> subprocess.Popen:
    args = pinned(["stdbuf", "-oL", str(bin_dir / "ggml-rpc-server"), "-H", "127.0.0.1", "-p", str(port),
                   *(["-c"] if cache_dir else [])], cpu)
    env = {**os.environ, **({"LLAMA_CACHE": str(cache_dir)} if cache_dir else {})}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            restore_signals=False, start_new_session=True)  # SIGPIPE ignored (RPC.md fact 5)
    wait(lambda: listening(port, "127.0.0.1"), 20, "ggml-rpc-server listening")
    return proc


def start_server(bin_dir: Path, model: Path, rpc: list[str] | None, threads: int = 2,
                 cpu: int | None = None) -> tuple[subprocess.Popen, int, float, int]:
    """llama-server (with --rpc when given): (proc, port, seconds to /health 200, bytes written by then)."""
    port = free_port()
    args = pinned([str(bin_dir / "llama-server"), "-m", str(model), "-c", "1024", "--host", "127.0.0.1",
                   "--port", str(port), "-t", str(threads), "-ngl", "99" if rpc else "0",
                   *(["--rpc", ",".join(rpc)] if rpc else [])], cpu)
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

    def __init__(self, work: Path, rpc_ports: list[int], cpu: int | None = None,
                 ssh_options: tuple[str, ...] = ()) -> None:
        self.work, self.cpu, self.ssh_options = work, cpu, ssh_options
        work.mkdir(parents=True, exist_ok=True)
        self.client_key = generate_key(work / "cluster_key")
        public = Path(f"{self.client_key}.pub").read_text()
        self.sshds, specs, known = [], [], ""
        for i, rpc_port in enumerate(rpc_ports):
            sshd = SshServer(work / f"sshd{i}").start()
            if cpu is not None:  # its session processes, forked later, inherit the CPU
                subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(sshd.proc.pid)], check=True,
                               stdout=subprocess.DEVNULL)
            # the agent's forced session (links/session.py), watching a record no agent writes here
            command = session_command(sys.executable, work / f"agent{i}" / "engine-process.json")
            sshd.authorized_keys.write_text(key_line(public, "127.0.0.1", rpc_port, command) + "\n")
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
        extra = [] if naive else [item for option in self.ssh_options for item in ("-o", option)]

        def argv(spec) -> list[str]:
            command = build(spec, self.client_key, self.known_hosts)
            return pinned([command[0], *extra, *command[1:]], self.cpu)  # ssh keeps the first value it reads

        procs = [subprocess.Popen(argv(spec), stdin=subprocess.PIPE,
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


def throughput(bin_dir: Path, model: Path, work: Path, options, deadline: float) -> tuple[dict[str, float], int]:
    """Tokens/s per path ({label: median}) and the number of rounds run before the deadline."""
    procs: list[subprocess.Popen] = []
    links: list[Links] = []
    compute = COMPUTE_CPU if options.pin else None
    link_cpu = LINK_CPU if options.pin else None
    threads = 1 if options.pin else options.server_threads
    try:
        # Each path gets its own pair of backends (a backend serves one client) and its own
        # llama-server, all up at once; one completion per path in turn, so the shared
        # machine's drift falls on every path alike.
        pairs = [[free_port(), free_port()] for _ in range(3)]
        procs += [start_backend(bin_dir, port, None, compute) for pair in pairs for port in pair]
        endpoints = {"local llama-server": None, "direct RPC (2 backends)": [f"127.0.0.1:{p}" for p in pairs[0]]}
        for label, pair, naive in (("podtui links", pairs[1], False), ("ssh -N links", pairs[2], True)):
            links.append(Links(work / f"{model.stem}-{label.split()[0].replace('-', '')}", pair, link_cpu,
                               tuple(options.ssh_option)))
            procs += links[-1].up(naive)
            endpoints[label] = links[-1].endpoints
        servers = {}
        for label, rpc in endpoints.items():
            proc, port, _, _ = start_server(bin_dir, model, rpc, threads, compute)
            procs.append(proc)
            servers[label] = port
        rates: dict[str, list[float]] = {label: [] for label in servers}
        for port in servers.values():
            tokens_per_s(port, options.tokens, 0)  # warm-up
        rounds = 0
        while rounds < options.runs and (rounds == 0 or time.monotonic() < deadline):
            for label, port in servers.items():
                rates[label].append(tokens_per_s(port, options.tokens, 0))
            rounds += 1
        return {label: statistics.median(values) for label, values in rates.items()}, rounds
    finally:
        for proc in procs:
            stop_process(proc)
        for link in links:
            link.close()


def second_loads(bin_dir: Path, model: Path, work: Path) -> dict[str, tuple[float, int]]:
    """{"without -c" | "with -c": (seconds to /health of the second start, bytes sent to the backends)},
    direct RPC, the backends kept between the two starts."""
    loads: dict[str, tuple[float, int]] = {}
    procs: list[subprocess.Popen] = []
    ports = [free_port(), free_port()]
    try:
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
    return loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--models", default="tiny,big", help="tiny, big or both (comma list)")
    parser.add_argument("--budget-s", type=float, default=900, help="no new round after this many seconds")
    parser.add_argument("--server-threads", type=int, default=2, help="llama-server -t (1 with --pin)")
    parser.add_argument("--pin", action="store_true", help="compute on CPU 0, ssh and sshd on CPU 1")
    parser.add_argument("--ssh-option", action="append", default=[], help="NAME=VALUE for podtui's links")
    parser.add_argument("--no-cache-figure", action="store_true", help="skip the -c second-start figure")
    options = parser.parse_args()
    started = time.monotonic()
    bin_dir = cache.llama_bin_dir()
    chosen = {name.strip() for name in options.models.split(",")}
    paths = {"tiny": models.ensure_model(models.TINY_A)} if "tiny" in chosen else {}
    if "big" in chosen or not options.no_cache_figure:
        big = big_model()
        if "big" in chosen:
            paths["big"] = big
    tables: dict[str, tuple[dict[str, float], int]] = {}
    loads: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rpc-") as tmp:
        work = Path(tmp)
        for name, model in paths.items():
            share = (options.budget_s - (time.monotonic() - started)) / (len(paths) - len(tables) + 1)
            tables[name] = throughput(bin_dir, model, work, options, time.monotonic() + share)
        if not options.no_cache_figure:
            loads = second_loads(bin_dir, big, work)
    settings = (f"llama-server -t {1 if options.pin else options.server_threads}"
                + (", pinned: compute on CPU 0, ssh/sshd on CPU 1" if options.pin else "")
                + (f", links with {' '.join(options.ssh_option)}" if options.ssh_option else ""))
    print(f"{options.tokens} tokens per completion, median of the rounds, CPU, loopback; {settings}")
    labels = list(next(iter(tables.values()))[0]) if tables else []
    header = "".join(f"{f'{name} t/s':>12}{'× direct':>10}" for name in tables)
    print(f"{'path':<26}{header}")
    for label in labels:
        cells = "".join(f"{rows[label]:>12.1f}{rows[label] / rows['direct RPC (2 backends)']:>10.2f}"
                        for rows, _ in tables.values())
        print(f"{label:<26}{cells}")
    print(f"{'rounds':<26}" + "".join(f"{rounds:>12}{'':>10}" for _, rounds in tables.values()))
    for name, (rows, _) in tables.items():
        ratio = rows["podtui links"] / rows["direct RPC (2 backends)"]
        size = paths[name].stat().st_size / 1e6
        print(f"{name} ({paths[name].name}, {size:.0f} MB): podtui links ≥ 0.80× direct: "
              f"{'met' if ratio >= 0.8 else 'MISSED'} ({ratio:.2f}×)")
    if loads:
        print(f"{'second start (direct)':<26}{'load s':>10}{'MB sent':>12}   ({big.name}, {big.stat().st_size / 1e6:.0f} MB)")
        for label, (load_s, written) in loads.items():
            print(f"{label:<26}{load_s:>10.2f}{written / 1e6:>12.1f}")
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
