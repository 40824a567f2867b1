"""The CPU stand-in for a GPU with N bytes free: llama-server under an address-space limit.

Shared by tests/remote_agent/fit, tests/remote_agent/engine/test_ctx_fit.py and bench/ctx_fit.py.
RLIMIT_AS counts virtual memory, so the engine runs with settings that make its virtual footprint
track what a GPU would hold: one malloc arena (MALLOC_ARENA_MAX=1; otherwise each thread reserves
64 MiB it never uses), 1 MiB thread stacks (RLIMIT_STACK; glibc sizes pthread stacks from it), two
HTTP threads and one slot. What remains beyond llama.cpp's own buffers (libraries, stacks, KV cell bookkeeping) is measured once by
`calibrate_overhead` and handed to the budget (remote_agent.fit.budget.address_space_budget).
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from remote_agent.fit.budget import EngineOverhead
from remote_agent.fit.estimate import FitParamsEstimator, RunConfig
from remote_agent.fit.oom import find_oom
from remote_agent.fit.search import LaunchOutcome
from tests.testbed.models import TinyModelSpec, ensure_model
from tests.testbed.procs import free_port, stop_process

STACK_BYTES = 1 << 20

# Long-context tiny models: the search is capped by the trained context, so the stand-in models
# claim 4M tokens to let the memory budget (not the metadata) decide. Head size 32, so the
# quantized cache types work (tiny-a's head size 16 allows only f16).
FIT_SMALL = TinyModelSpec("fit-small", seed=11, n_embd=64, n_head=2, n_head_kv=2, n_ff=128,
                          context_length=4 * 1048576)
FIT_LARGE = TinyModelSpec("fit-large", seed=12, n_embd=128, n_layer=4, n_head=4, n_head_kv=2,
                          n_ff=256, context_length=4 * 1048576)


def fit_model(spec: TinyModelSpec) -> Path:
    return ensure_model(spec)


def _limits(limit_bytes: int | None):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_STACK, (STACK_BYTES, STACK_BYTES))
        if limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    return apply


@dataclass
class AddressSpaceLauncher:
    """try_ctx for the search: start llama-server at ctx under the limit, report how it went.

    Success means /health answered 200; the peak virtual size (VmPeak) is then read from /proc
    and the server stopped. A failure's log is classified with remote_agent.fit.oom.
    """
    bin_dir: Path
    model: Path
    limit_bytes: int | None
    cfg: RunConfig = field(default_factory=RunConfig)
    timeout: float = 60.0
    launches: list[int] = field(default_factory=list)
    last_log: str = ""

    def command(self, ctx: int, port: int) -> list[str]:
        return [str(self.bin_dir / "llama-server"), "-m", str(self.model), "-c", str(ctx),
                "--host", "127.0.0.1", "--port", str(port), "-t", "2", "--threads-http", "2",
                "-ngl", "999", "-fit", "off", "--no-warmup", *self.cfg.engine_args()]

    def __call__(self, ctx: int) -> LaunchOutcome:
        self.launches.append(ctx)
        port = free_port()
        proc = subprocess.Popen(self.command(ctx, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_limits(self.limit_bytes),
                                env={**os.environ, "MALLOC_ARENA_MAX": "1"})
        peak = None
        try:
            healthy = self._wait_healthy(proc, port)
            if healthy:
                peak = _vm_peak(proc.pid)
        finally:
            stop_process(proc)
            self.last_log = proc.stdout.read().decode(errors="replace")
            proc.stdout.close()
        if healthy:
            return LaunchOutcome(True, peak_bytes=peak)
        oom = find_oom(self.last_log.splitlines())
        if oom is not None:
            return LaunchOutcome(False, oom=oom)
        return LaunchOutcome(False, error=f"llama-server exited with {proc.returncode}: "
                             + (self.last_log.strip().splitlines() or ["no output"])[-1], error_kind="crashed")

    def _wait_healthy(self, proc: subprocess.Popen, port: int) -> bool:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False


def _vm_peak(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmPeak:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def calibrate_overhead(bin_dir: Path, model: Path, cfg: RunConfig = RunConfig(),
                       ctxs: tuple[int, int] = (131072, 524288)) -> EngineOverhead:
    """Two unlimited launches: measured peak minus llama-fit-params' figures, as a line in ctx."""
    launcher = AddressSpaceLauncher(bin_dir, model, None, cfg)
    reference = FitParamsEstimator(bin_dir / "llama-fit-params", model, cfg)
    points = []
    for ctx in ctxs:
        outcome = launcher(ctx)
        if not outcome.ok or outcome.peak_bytes is None:
            raise RuntimeError(f"calibration launch at ctx {ctx} failed: {launcher.last_log[-500:]}")
        points.append((ctx, outcome.peak_bytes, reference.bytes_at(ctx)))
    return EngineOverhead.from_peaks(points)
