"""Remembered fit results, so a known (model, GPU, settings) starts at its ctx in one launch.

Keyed by the model file's identity (size, mtime and a hash of its first MiB, the header), the GPU
name and total memory, the engine, the cache types and the parallel slots. Stored as one JSON
file in the agent's state dir, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from remote_agent.fit.budget import Budget
from remote_agent.fit.estimate import RunConfig
from remote_agent.fit.estimate import Estimator
from remote_agent.fit.search import FitResult, Progress, TryCtx, search_ctx

CACHE_FILE = "fit-cache.json"
_HEADER_HASH_BYTES = 1 << 20


def model_identity(path: Path) -> dict:
    st = path.stat()
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read(_HEADER_HASH_BYTES)).hexdigest()[:32]
    return {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "header_sha256": digest}


def cache_key(model: Path, budget: Budget, engine: str, cfg: RunConfig) -> str:
    ident = model_identity(model)
    parts = [ident["size"], ident["mtime_ns"], ident["header_sha256"], budget.gpu_name,
             budget.gpu_total_bytes, engine, cfg.cache_type_k, cfg.cache_type_v, cfg.parallel]
    if cfg.swa_full:  # added later: keys of configurations without it stay as they were
        parts.append("swa_full")
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


class FitCache:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / CACHE_FILE

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}  # a missing or damaged cache only costs a search

    def get(self, key: str) -> dict | None:
        return self._load().get(key)

    def put(self, key: str, record: dict) -> None:
        data = self._load()
        data[key] = {**record, "saved_at": time.time()}
        self._write(data)

    def forget(self, key: str) -> None:
        data = self._load()
        if data.pop(key, None) is not None:
            self._write(data)

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


def fit_with_cache(cache: FitCache | None, key: str, estimator: Estimator, budget: Budget,
                   try_ctx: TryCtx | None, *, ctx_cap: int, trained_ctx: int | None = None,
                   fresh: bool = False, on_progress: Progress | None = None, **search_kwargs) -> FitResult:
    """A remembered result when one applies (verified by one launch), else a search, remembered."""
    progress = on_progress or (lambda event: None)
    record = None if (cache is None or fresh) else cache.get(key)
    if record is not None and record.get("status") == "fits" and try_ctx is not None:
        cap = min(ctx_cap, trained_ctx or ctx_cap)
        # A result limited by an earlier, lower cap says nothing about a higher cap: search again.
        if record["limited_by"] == "memory" or record["ctx"] >= cap:
            ctx = min(record["ctx"], cap) // 256 * 256
            progress({"phase": "fit", "ctx": ctx, "message": f"remembered fit: trying {ctx}"})
            outcome = try_ctx(ctx)
            if outcome.ok:
                limited = record["limited_by"] if ctx == record["ctx"] else "ctx_cap"
                return FitResult("fits", ctx, 1, record["need_bytes"], budget.bytes, budget.free_bytes,
                                 limited, f"ctx {ctx} fits (remembered); 1 launch", from_cache=True,
                                 attempts=[{"ctx": ctx, "ok": True, "peak_bytes": outcome.peak_bytes,
                                            "failed_bytes": None}])
            progress({"phase": "fit", "ctx": ctx,
                      "message": f"remembered ctx {ctx} no longer loads; searching again"})
    elif record is not None and record.get("status") == "nothing_fits" and record["budget_bytes"] >= budget.bytes:
        progress({"phase": "fit", "ctx": None, "message": record["message"] + " (remembered)"})
        fields = {k: v for k, v in record.items() if k in FitResult.__dataclass_fields__}
        return FitResult(**{**fields, "launches": 0, "from_cache": True, "attempts": []})
    result = search_ctx(estimator, budget, try_ctx, ctx_cap=ctx_cap, trained_ctx=trained_ctx,
                        on_progress=progress, **search_kwargs)
    if cache is not None and result.status in ("fits", "nothing_fits"):
        stored = result.to_json()
        stored.pop("attempts", None)
        stored.pop("from_cache", None)
        cache.put(key, stored)
    return result
