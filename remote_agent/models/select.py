"""Which GGUF file(s) a repo, directory or quant filter means (seed 000 Q2, seed 004)."""

from __future__ import annotations

import re

from remote_agent.models.store import SPLIT_RE


def is_gguf_name(path: str) -> bool:
    return path.lower().endswith(".gguf")


def is_projector(path: str) -> bool:
    # Vision projectors (mmproj-*.gguf) are GGUF but not loadable as the main model.
    return "mmproj" in path.rsplit("/", 1)[-1].lower()


def matches_quant(path: str, quant: str) -> bool:
    """`Q4_K_M` matches …-Q4_K_M.gguf, …Q4_K_M-00001-of-00002.gguf, Q4_K_M/x.gguf (any case), but not
    IQ4_K_M or Q4_K_M_L: the quant must stand between separators."""
    pattern = rf"(?<![A-Za-z0-9]){re.escape(quant)}(?![A-Za-z0-9]|_[A-Za-z0-9])"
    return re.search(pattern, path, re.IGNORECASE) is not None


def pick_model(paths: list[str], quant: str | None = None) -> list[str]:
    """The files to fetch: the first GGUF in alphanumeric (code point) order among `paths` (after the
    quant filter), plus every other part when it is a split model. Empty when nothing fits."""
    candidates = sorted(p for p in paths if is_gguf_name(p) and not is_projector(p))
    if quant:
        candidates = [p for p in candidates if matches_quant(p, quant)]
    if not candidates:
        return []
    return split_siblings(candidates[0], paths)


def split_siblings(chosen: str, paths: list[str]) -> list[str]:
    """All parts of the split model `chosen` belongs to, part one first (as listed in `paths`,
    plus the expected names of any part the listing lacks, so the download reports it missing)."""
    directory, _, name = chosen.rpartition("/")
    m = SPLIT_RE.match(name)
    if not m:
        return [chosen]
    count = int(m["count"])
    prefix = f"{directory}/" if directory else ""
    return [f"{prefix}{m['stem']}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]
