"""Recognise an out-of-memory failure in llama.cpp / koboldcpp output and read how big the
allocation was that failed (contract D), so the search can recompute instead of halving.

Lines it knows (all printed by ggml, which both engines share):
  ggml_aligned_malloc: insufficient memory (attempted to allocate 1025.01 MB)      CPU, MB = MiB
  ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 1073741824
  alloc_tensor_range: failed to allocate CPU buffer of size 1073741824
  ggml_gallocr_reserve_n: failed to allocate CUDA0 buffer of size 1294967296
  ggml_backend_cuda_buffer_type_alloc_buffer: allocating 1234.56 MiB on device 0: cudaMalloc failed: out of memory
  CUDA error: out of memory                                                        (no size)
  CUDA error: the resource allocation failed (cublasCreate_v2)                     (no size)
and what was being allocated: `failed to allocate buffer for kv cache`, `failed to allocate
compute ... buffers`, `error loading model` / `unable to allocate ... buffer` (weights).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MiB = 1 << 20

_SIZE_PATTERNS = [
    # exact byte counts first: they are more precise than the MiB figures
    (re.compile(r"failed to allocate (?:(\w+) )?buffer of size (\d+)"), lambda m: int(m.group(2)), 2),
    (re.compile(r"allocating ([\d.]+) MiB on device (\d+): cudaMalloc failed"),
     lambda m: int(float(m.group(1)) * MiB), 1),
    (re.compile(r"insufficient memory \(attempted to allocate ([\d.]+) MB\)"),
     lambda m: int(float(m.group(1)) * MiB), 1),
]
_OOM_WITHOUT_SIZE = re.compile(
    r"CUDA error: out of memory|cudaMalloc failed: out of memory|out of memory|"
    r"mmap failed: Cannot allocate memory|std::bad_alloc|Cannot allocate memory|"
    r"resource allocation failed|cublasCreate", re.I)
# A warning llama.cpp survives (page-locked host memory refused; it falls back to ordinary memory):
# `ggml_cuda_host_malloc: failed to allocate 1900.00 MiB of pinned memory: invalid argument`.
# Never an out-of-memory failure (the engine classifier ignores it too: engine/adapters/classify.py).
PINNED_MEMORY_WARNING = r"of pinned memory"
_HARMLESS = re.compile(PINNED_MEMORY_WARNING, re.I)
_WHAT = [
    ("kv", re.compile(r"kv cache|KV buffer", re.I)),
    ("compute", re.compile(r"compute (?:pp |tg )?buffers?|graph_reserve|gallocr", re.I)),
    ("weights", re.compile(r"error loading model|unable to allocate .*buffer|load_tensors|mmap failed", re.I)),
]


@dataclass(frozen=True)
class OomInfo:
    """An out-of-memory failure: the allocation that failed, when the log says how big it was."""
    failed_bytes: int | None
    buffer: str          # "kv" | "compute" | "weights" | "unknown"
    line: str            # the log line that carried the size (or the OOM line)

    def describe(self) -> str:
        size = f"a {format_bytes(self.failed_bytes)} " if self.failed_bytes else "an "
        what = {"kv": "KV cache", "compute": "compute buffer", "weights": "model weights"}.get(self.buffer, "")
        return f"{size}{what + ' ' if what else ''}allocation failed".replace("  ", " ")


def format_bytes(n: int | float) -> str:
    if abs(n) >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    return f"{n / MiB:.0f} MiB"


def find_oom(lines: Iterable[str]) -> OomInfo | None:
    """The first out-of-memory failure in the log, or None if the log shows none."""
    lines = [line for line in lines if not _HARMLESS.search(line)]
    for i, line in enumerate(lines):
        size, size_line = _size_in(line), line
        if size is None and not _OOM_WITHOUT_SIZE.search(line):
            continue
        # The size often comes a line or two after the first complaint, and what was being
        # allocated a few lines later still (`failed to allocate buffer for kv cache`).
        window = lines[i:i + 8]
        best = None
        for later in window:
            found = _size_in(later)
            if found is not None and (best is None or found[1] > best[1]):
                best, size_line = found, later
        size = best
        return OomInfo(size[0] if size else None, _what(window), (size_line if size else line).strip())
    return None


def _size_in(line: str) -> tuple[int, int] | None:
    for pattern, to_bytes, precision in _SIZE_PATTERNS:
        m = pattern.search(line)
        if m:
            return to_bytes(m), precision
    return None


def _what(window: list[str]) -> str:
    text = "\n".join(window)
    for name, pattern in _WHAT:
        if pattern.search(text):
            return name
    return "unknown"
