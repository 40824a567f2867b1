"""Small process helpers shared by the test-bed parts: free ports, waiting, killing by PID."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process's own group (it was started with start_new_session), then SIGKILL."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def address_space_limiter(limit_bytes: int) -> Callable[[], None]:
    """A preexec_fn that caps the child's address space (RLIMIT_AS), the CPU stand-in for VRAM."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


def run_with_address_space_limit(
    cmd: Sequence[str], limit_bytes: int, timeout: float = 120.0, **kwargs
) -> subprocess.CompletedProcess:
    """Run cmd to completion under an address-space limit, capturing its output as text."""
    return subprocess.run(
        list(cmd),
        preexec_fn=address_space_limiter(limit_bytes),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=timeout,
        start_new_session=True,
        **kwargs,
    )
