"""How many bytes the engine may use: free GPU memory (nvidia-smi) minus a margin, or an explicit
figure, together with what the engine process costs beyond llama.cpp's own buffers.

`need(ctx) = estimator.bytes_at(ctx) + overhead.at(ctx)` is compared with `Budget.bytes`.

The CPU stand-in used by the tests and the benchmark (llama-server under RLIMIT_AS) counts
*virtual* memory: the model's mmap, the binary's libraries, thread stacks and malloc arenas, and
host-side bookkeeping that grows with the context (KV cell metadata, about 50 bytes a token).
`address_space_budget` maps an address-space limit onto this model: the budget is the limit, and
the overhead is a line fitted from two unlimited launches (`EngineOverhead.from_peaks`), measured
once per engine build and machine. On a GPU the overhead is the CUDA context and the
allocator's slack, covered by the margin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from remote_agent.child_env import without_secrets

MiB = 1 << 20
DEFAULT_GPU_MARGIN = 512 * MiB  # CUDA context + fragmentation; llama.cpp's own -fit keeps 1 GiB


class BudgetError(RuntimeError):
    """No budget can be determined (no nvidia-smi, no GPU); the message says what to pass instead."""


@dataclass(frozen=True)
class EngineOverhead:
    """Bytes the engine process needs beyond weights + KV + compute: base + per_token × ctx."""
    base_bytes: int = 0
    per_token_bytes: float = 0.0

    def at(self, ctx: int) -> int:
        return int(self.base_bytes + self.per_token_bytes * ctx)

    @classmethod
    def from_peaks(cls, points: list[tuple[int, int, int]]) -> "EngineOverhead":
        """Fit from (ctx, measured peak bytes, estimated bytes) of launches without a limit."""
        if len(points) < 2:
            ctx, peak, est = points[0]
            return cls(max(0, peak - est), 0.0)
        (c1, p1, e1), (c2, p2, e2) = sorted(points)[0], sorted(points)[-1]
        slope = ((p2 - e2) - (p1 - e1)) / (c2 - c1) if c2 != c1 else 0.0
        slope = max(0.0, slope)
        return cls(int((p1 - e1) - slope * c1), slope)

    def to_json(self) -> dict:
        return {"base_bytes": self.base_bytes, "per_token_bytes": self.per_token_bytes}


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_total_mib: int
    memory_free_mib: int


@dataclass(frozen=True)
class Budget:
    bytes: int
    source: str          # "nvidia-smi" | "explicit" | "address-space"
    gpu_name: str        # for the cache key and messages ("cpu" for the stand-in)
    gpu_total_bytes: int
    free_bytes: int      # what was free before the margin, for the "GPU has Y GiB free" message
    overhead: EngineOverhead = EngineOverhead()


def explicit_budget(n_bytes: int, gpu_name: str = "explicit", overhead: EngineOverhead = EngineOverhead()) -> Budget:
    if n_bytes <= 0:
        raise BudgetError(f"the memory budget must be positive (got {n_bytes}); pass e.g. --memory-budget 20GiB")
    return Budget(n_bytes, "explicit", gpu_name, n_bytes, n_bytes, overhead)


def address_space_budget(limit_bytes: int, overhead: EngineOverhead) -> Budget:
    """The CPU stand-in: an RLIMIT_AS limit on the engine, with its measured process overhead."""
    return Budget(limit_bytes, "address-space", "cpu-address-space", limit_bytes, limit_bytes, overhead)


def query_gpus(nvidia_smi: str | None = None, timeout: float = 20.0) -> list[GpuInfo]:
    """Every GPU nvidia-smi reports; raises BudgetError without nvidia-smi or when it fails."""
    exe = nvidia_smi or shutil.which("nvidia-smi")
    if not exe:
        raise BudgetError("nvidia-smi was not found, so free GPU memory is unknown; "
                          "pass an explicit budget (--memory-budget) or an explicit ctx")
    try:
        out = subprocess.run([exe, "--query-gpu=index,name,memory.total,memory.free",
                              "--format=csv,noheader,nounits"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, timeout=timeout, check=True,
                             env=without_secrets()).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise BudgetError(f"nvidia-smi failed ({e}); pass an explicit budget (--memory-budget)") from e
    return parse_nvidia_smi(out)


def parse_nvidia_smi(csv_text: str) -> list[GpuInfo]:
    gpus = []
    for line in csv_text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4 and parts[0].isdigit():
            try:
                gpus.append(GpuInfo(int(parts[0]), parts[1], int(float(parts[2])), int(float(parts[3]))))
            except ValueError:   # "[N/A]" for a GPU in a bad state: skip it, keep the others
                continue
    return gpus


def engine_gpu_indices(env: dict | None = None) -> list[int] | None:
    """The GPUs the engine will see (CUDA_VISIBLE_DEVICES by index), None for all."""
    visible = (env if env is not None else os.environ).get("CUDA_VISIBLE_DEVICES")
    if visible is None or not visible.strip():
        return None
    return [int(v) for v in visible.split(",") if v.strip().isdigit()]


def gpu_budget(gpus: list[GpuInfo], indices: list[int] | None = None,
               margin_bytes: int = DEFAULT_GPU_MARGIN) -> Budget:
    """Free memory summed over the engine's GPUs, minus a margin per GPU."""
    chosen = [g for g in gpus if indices is None or g.index in indices]
    if not chosen:
        raise BudgetError("no GPU is visible to the engine (nvidia-smi lists none of "
                          f"{indices}); check CUDA_VISIBLE_DEVICES or pass --memory-budget")
    free = sum(g.memory_free_mib for g in chosen) * MiB
    total = sum(g.memory_total_mib for g in chosen) * MiB
    names = sorted({g.name for g in chosen})
    name = f"{len(chosen)}x {names[0]}" if len(names) == 1 else " + ".join(g.name for g in chosen)
    return Budget(max(0, free - margin_bytes * len(chosen)), "nvidia-smi", name, total, free)
