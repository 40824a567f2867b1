"""A MODEL that is already on disk: validate it (exists, GGUF magic, all split parts) and return it."""

from __future__ import annotations

from pathlib import Path

from remote_agent.fit import gguf_meta
from remote_agent.models import select, store
from remote_agent.models.errors import ModelError


def resolve_local(path: Path) -> Path:
    if path.is_dir():
        return _pick_in_directory(path)
    if not path.exists():
        raise ModelError("not_found", f"no such file: {path}. Check the path (is the volume mounted?) "
                                      "or give a Hugging Face repo instead.")
    if not path.is_file():
        raise ModelError("not_found", f"{path} is not a regular file; give the path of a .gguf file.")
    parts = store.split_parts(path)
    missing = [p.name for p in parts if not p.exists()]
    if missing:
        raise ModelError("not_found", f"split model {parts[0].name} is incomplete: missing {', '.join(missing)} "
                                      f"in {path.parent}. Copy or download every part.")
    for part in parts:
        if not gguf_meta.has_gguf_magic(part):
            raise ModelError("not_gguf", f"{part} is not a GGUF file (it does not start with the GGUF magic); "
                                         "llama.cpp and koboldcpp load GGUF only — convert it or pick a .gguf file.")
    return parts[0]


def _pick_in_directory(directory: Path) -> Path:
    names = [p.relative_to(directory).as_posix() for p in directory.rglob("*")
             if p.is_file() and not any(s.startswith(".") for s in p.relative_to(directory).parts)]
    chosen = select.pick_model(names)
    if not chosen:
        raise ModelError("not_found", f"no .gguf file in directory {directory}; give the path of a GGUF file.")
    return resolve_local(directory / chosen[0])
