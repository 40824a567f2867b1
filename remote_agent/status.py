"""The host facts in `status`: free disk in MODEL_DIR and the GPUs nvidia-smi reports (null without it)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

GPU_CACHE_S = 5.0  # nvidia-smi takes tens of ms; status must stay fast
_gpu_cache: tuple[float, list[dict] | None] | None = None


def disk_free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds path (its nearest existing ancestor)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


def query_gpus(nvidia_smi: str | None = None) -> list[dict] | None:
    """[{"name", "memory_total_mib", "memory_free_mib"}] per GPU, or None where there is no nvidia-smi
    (or it fails): no GPU is a fact to show, not an error."""
    binary = nvidia_smi or shutil.which("nvidia-smi")
    if not binary:
        return None
    try:
        out = subprocess.run([binary, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for row in out.strip().splitlines():
        parts = [p.strip() for p in row.split(",")]
        if len(parts) != 3:
            continue
        try:
            gpus.append({"name": parts[0], "memory_total_mib": int(float(parts[1])),
                         "memory_free_mib": int(float(parts[2]))})
        except ValueError:
            continue
    return gpus


def cached_gpus() -> list[dict] | None:
    global _gpu_cache
    now = time.monotonic()
    if _gpu_cache is None or now - _gpu_cache[0] > GPU_CACHE_S:
        _gpu_cache = (now, query_gpus())
    return _gpu_cache[1]
