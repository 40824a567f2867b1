"""Models: parse MODEL, download what is missing from Hugging Face into MODEL_DIR, list and delete.

Contract C (the daemon's swap uses it): `resolve_model`, `ModelError` (with `.code`), and
`store.list_models / delete_model / mark_used`. huggingface_hub is imported lazily, only when a
download is needed, so the agent's start path stays standard-library only.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from remote_agent.models.errors import ModelError
from remote_agent.models.local import resolve_local
from remote_agent.models.refs import LocalRef, parse_model_ref

__all__ = ["ModelError", "resolve_model"]


def resolve_model(text: str, models_dir: Path, *, token: str | None = None,
                  on_progress: Callable[[dict], None] | None = None,
                  cancel: threading.Event | None = None, keep_free_bytes: int | None = None) -> Path:
    """The GGUF to load for MODEL `text` (part one of a split model), downloading what is missing
    into `models_dir`. Blocking: the daemon runs it in a thread; `cancel` stops a download between
    chunks (the partial file is kept and the next call resumes it). `keep_free_bytes` is the disk
    space a download must leave free in `models_dir` (default 256 MiB). Raises ModelError."""
    models_dir = Path(models_dir)
    ref = parse_model_ref(text, models_dir)
    if isinstance(ref, LocalRef):
        return resolve_local(ref.path)
    from remote_agent.models.download import fetch  # lazy: pulls in huggingface_hub

    extra = {} if keep_free_bytes is None else {"keep_free_bytes": keep_free_bytes}
    return fetch(ref, models_dir, token=token, on_progress=on_progress, cancel=cancel, **extra)
