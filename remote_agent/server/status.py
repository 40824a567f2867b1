"""The host facts in `status`: free disk in MODEL_DIR and the GPUs nvidia-smi reports (null without it)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from remote_agent.fit import budget

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
    try:
        gpus = budget.query_gpus(nvidia_smi, timeout=5.0)
    except budget.BudgetError:
        return None
    return [{"name": gpu.name, "memory_total_mib": gpu.memory_total_mib, "memory_free_mib": gpu.memory_free_mib}
            for gpu in gpus]


def cached_gpus() -> list[dict] | None:
    """query_gpus(), asked again at most every GPU_CACHE_S seconds."""
    global _gpu_cache
    now = time.monotonic()
    if _gpu_cache is None or now - _gpu_cache[0] > GPU_CACHE_S:
        _gpu_cache = (now, query_gpus())
    return _gpu_cache[1]
