"""MODEL_DIR on disk: where hub files land, what `models.list` shows, deleting, last-used times.

Layout: a hub file `org/repo` + `path/in/repo.gguf` lives at MODEL_DIR/org/repo/path/in/repo.gguf,
so its `models.list` name is also a MODEL that resolves to it without the network. Everything the
agent keeps for itself sits under MODEL_DIR/.remote-agent/ (partial downloads, last-used times),
which the listing skips.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

from remote_agent.fit import gguf_meta
from remote_agent.models.errors import ModelError

AGENT_DIR = ".remote-agent"
USAGE_FILE = "last-used.json"
SPLIT_RE = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# llama.cpp quant names as they appear in file names (Q4_K_M, IQ3_XXS, Q8_0, BF16, UD-Q4_K_XL …)
QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])((?:UD-)?(?:I?Q[1-8](?:_[0-9A-Z]+)*|BF16|F16|F32|MXFP4(?:_MOE)?|TQ[12]_0))(?![A-Za-z0-9])",
    re.IGNORECASE,
)


def agent_dir(models_dir: Path) -> Path:
    return models_dir / AGENT_DIR


def hub_file_path(models_dir: Path, repo_id: str, repo_path: str) -> Path:
    """Where a hub file is stored; refuses anything that would land outside MODEL_DIR."""
    return inside(models_dir, f"{repo_id}/{repo_path}")


def partial_path(models_dir: Path, repo_id: str, repo_path: str, tag: str) -> Path:
    """The resumable partial download of one version (`tag` = its sha256/etag) of a hub file."""
    safe_tag = re.sub(r"[^A-Za-z0-9]", "", tag)[:64] or "unknown"
    return inside(agent_dir(models_dir) / "partial", f"{repo_id}/{repo_path}.{safe_tag}.part")


def inside(base: Path, relative: str) -> Path:
    if relative.startswith("/") or "\\" in relative or any(p in ("", ".", "..") for p in relative.split("/")):
        raise ModelError("bad_ref", f"refused path {relative!r}: it would reach outside {base}.")
    target = (base / relative).resolve()
    if not target.is_relative_to(base.resolve()):
        raise ModelError("bad_ref", f"refused path {relative!r}: it resolves outside {base} (symlink?).")
    return base / relative


def split_parts(first_or_any: Path) -> list[Path]:
    """All parts of a split GGUF given any part (a single file gives [itself])."""
    m = SPLIT_RE.match(first_or_any.name)
    if not m:
        return [first_or_any]
    count = int(m["count"])
    return [first_or_any.with_name(f"{m['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]


def quant_of(name: str) -> str | None:
    matches = QUANT_RE.findall(Path(name).name) or QUANT_RE.findall(name)
    return matches[-1].upper() if matches else None


def list_models(models_dir: Path) -> list[dict]:
    """Every GGUF model in MODEL_DIR (split models once, by part one, with the size of all parts)."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    usage = _read_usage(models_dir)
    found = []
    for root, dirs, files in os.walk(models_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.lower().endswith(".gguf") or name.startswith("."):
                continue
            path = Path(root) / name
            m = SPLIT_RE.match(name)
            if m and int(m["part"]) != 1:
                continue  # counted with part one
            if not gguf_meta.has_gguf_magic(path):
                continue
            parts = split_parts(path)
            size = sum(p.stat().st_size for p in parts if p.exists())
            rel = path.relative_to(models_dir).as_posix()
            entry = {
                "name": rel,
                "path": str(path),
                "size_bytes": size,
                "quant": quant_of(rel),
                "trained_ctx": gguf_meta.trained_context(path),
                "last_used": usage.get(str(path.resolve())),
            }
            if len(parts) > 1:
                entry["parts"] = len(parts)
                entry["complete"] = all(p.exists() for p in parts)
            found.append(entry)
    return found


def delete_model(models_dir: Path, name: str) -> dict:
    """Delete a listed model (all parts of a split one). Returns {"name", "freed_bytes", "files"}."""
    models_dir = Path(models_dir)
    path = inside(models_dir, name)
    if path.name.startswith(".") or not path.name.lower().endswith(".gguf") or not path.is_file():
        raise ModelError("not_found", f"no model named {name!r} in {models_dir}; `models.list` shows the names.")
    parts = [p for p in split_parts(path) if p.exists()]
    freed = 0
    for part in parts:
        freed += part.stat().st_size
        part.unlink()
    prune_empty_dirs(path.parent, models_dir)
    _forget_usage(models_dir, [p.resolve() for p in parts])
    return {"name": name, "freed_bytes": freed, "files": [str(p) for p in parts]}


def mark_used(path: Path) -> None:
    """Record that the engine loaded this model now (kept in MODEL_DIR/.remote-agent/last-used.json
    of the MODEL_DIR holding it; a file outside any MODEL_DIR has nothing to record into)."""
    path = Path(path).resolve()
    models_dir = _owning_models_dir(path)
    if models_dir is None:
        return
    usage = _read_usage(models_dir)
    usage[str(path)] = round(time.time(), 3)
    _write_json_atomic(agent_dir(models_dir) / USAGE_FILE, usage)


def ensure_layout(models_dir: Path) -> None:
    agent_dir(models_dir).mkdir(parents=True, exist_ok=True)


def _owning_models_dir(path: Path) -> Path | None:
    for parent in path.parents:
        if (parent / AGENT_DIR).is_dir():
            return parent
    return None


def _read_usage(models_dir: Path) -> dict:
    try:
        data = json.loads((agent_dir(models_dir) / USAGE_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _forget_usage(models_dir: Path, paths: list[Path]) -> None:
    usage = _read_usage(models_dir)
    if any(str(p) in usage for p in paths):
        for p in paths:
            usage.pop(str(p), None)
        _write_json_atomic(agent_dir(models_dir) / USAGE_FILE, usage)


def _write_json_atomic(target: Path, data: dict) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prune_empty_dirs(directory: Path, stop: Path) -> None:
    stop = stop.resolve()
    directory = directory.resolve()
    while directory != stop and directory.is_relative_to(stop):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent
