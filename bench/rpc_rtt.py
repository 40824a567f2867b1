"""What one round trip through a link costs (issue 18, bench/rpc.py's helper): a TCP echo on loopback,
reached directly and through SSH links built as the server's agent builds them, with variants.

RPC.md §2.3: per generated token each backend costs about one blocking round trip (6 fire-and-forget
`set_tensor`, 1 `graph_recompute`, 1 blocking `get_tensor`); a link adds its own cost to each. This
measures that cost alone, without llama.cpp: `--pings` exchanges of `--size` bytes (echo server in its
own process, TCP_NODELAY on both ends), median and mean microseconds per round trip.

    .venv/bin/python bench/rpc_rtt.py [--pings 2000] [--size 64] [--pin]

Variants: the link's default cipher (OpenSSH 9.2 picks chacha20-poly1305@openssh.com), aes128-gcm@openssh.com
(AES-NI), IPQoS=none, and `ssh -N` (no session: no TCP_NODELAY, RPC.md fact 19). `--pin` runs ssh on
CPU 1 and sshd, the echo server and the client on CPU 0 (taskset), to show how much is contention on
this 2-core machine. Everything binds 127.0.0.1; the whole run is capped by `--budget-s`.
"""

from __future__ import annotations

import argparse
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

from remote_agent.engine.rpc_wire import listening
from remote_agent.links.authorized import key_line
from remote_agent.links.command import naive_command, ssh_command
from remote_agent.links.spec import parse_links
from tests.testbed.procs import free_port, stop_process
from tests.testbed.sshd import SshServer, generate_key


def echo_server(port: int) -> None:
    """Serve echo on 127.0.0.1:port, one client at a time (like ggml-rpc-server), until killed."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while data := conn.recv(1 << 20):
                conn.sendall(data)


def round_trips(port: int, pings: int, size: int) -> list[float]:
    """Microseconds per exchange of size bytes with the echo behind port (after 50 warm-up exchanges)."""
    payload = b"x" * size
    times = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(pings + 50):
            started = time.perf_counter()
            conn.sendall(payload)
            got = 0
            while got < size:
                chunk = conn.recv(size - got)
                if not chunk:
                    raise ConnectionError("the echo closed")
                got += len(chunk)
            if i >= 50:
                times.append((time.perf_counter() - started) * 1e6)
    return times


def with_options(argv: list[str], options: dict[str, str]) -> list[str]:
    """argv with `-o NAME=VALUE` added right after `ssh` (ssh keeps the first value it reads)."""
    extra = [item for name, value in options.items() for item in ("-o", f"{name}={value}")]
    return [argv[0], *extra, *argv[1:]]


def pinned(argv: list[str], cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--pin", action="store_true", help="ssh on CPU 1; sshd, echo and client on CPU 0")
    parser.add_argument("--budget-s", type=float, default=120)
    options = parser.parse_args()
    if options.pin:
        os.sched_setaffinity(0, {0})
    deadline = time.monotonic() + options.budget_s
    echo_port = free_port()
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="bench-rtt-") as tmp:
        work = Path(tmp)
        sshd = None
        try:
            procs.append(subprocess.Popen(pinned([sys.executable, __file__, "--echo", str(echo_port)],
                                                 0 if options.pin else None), start_new_session=True))
            while not listening(echo_port, "127.0.0.1"):
                time.sleep(0.02)
            key = generate_key(work / "cluster_key")
            sshd = SshServer(work / "sshd")
            sshd.authorized_keys.write_text(key_line(Path(f"{key}.pub").read_text(), "127.0.0.1", echo_port) + "\n")
            sshd.start()
            if options.pin:
                subprocess.run(["taskset", "-a", "-p", "-c", "0", str(sshd.proc.pid)], check=True,
                               stdout=subprocess.DEVNULL)  # its session children inherit CPU 0
            known = work / "known_hosts"
            known.write_text(f"b0 {sshd.host_public_key}\n")
            spec = {"name": "b0", "endpoint": "127.0.0.1:1", "host": "127.0.0.1", "port": sshd.port,
                    "user": "root", "rpc_port": echo_port, "host_key_alias": "b0"}
            variants = {
                "podtui link (default cipher)": (ssh_command, {}),
                "link, aes128-gcm": (ssh_command, {"Ciphers": "aes128-gcm@openssh.com"}),
                "link, chacha20-poly1305": (ssh_command, {"Ciphers": "chacha20-poly1305@openssh.com"}),
                "link, IPQoS=none": (ssh_command, {"IPQoS": "none"}),
                "ssh -N": (naive_command, {}),
            }
            rows = {"direct": round_trips(echo_port, options.pings, options.size)}
            for label, (build, extra) in variants.items():
                if time.monotonic() > deadline:
                    print(f"budget spent: {label} and later variants not run")
                    break
                spec["endpoint"] = f"127.0.0.1:{free_port()}"
                (link,), _, _ = parse_links({"links": [spec], "known_hosts": known.read_text(),
                                             "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----"})
                argv = pinned(with_options(build(link, key, known), extra), 1 if options.pin else None)
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True)
                procs.append(proc)
                while not listening(link.local_port, "127.0.0.1"):
                    if proc.poll() is not None:
                        raise RuntimeError(proc.stderr.read().decode(errors="replace"))
                    time.sleep(0.02)
                rows[label] = round_trips(link.local_port, options.pings, options.size)
                stop_process(proc)
        finally:
            for proc in procs:
                stop_process(proc)
            if sshd is not None:
                sshd.stop()
    base = statistics.median(rows["direct"])
    print(f"{options.pings} round trips of {options.size} B each, loopback{', pinned' if options.pin else ''}")
    print(f"{'path':<30}{'median µs':>11}{'mean µs':>10}{'+µs/RTT':>10}")
    for label, times in rows.items():
        median = statistics.median(times)
        print(f"{label:<30}{median:>11.0f}{statistics.mean(times):>10.0f}{median - base:>10.0f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--echo":
        echo_server(int(sys.argv[2]))
    else:
        main()
