"""Which context size to start an engine with.

An explicit number wins. `auto` is the context-fit search's job (issue #7, `remote_agent/fit/`);
until that lands, `auto` falls back to CTX when it is a number, else the engine's own default
(llama-server: the model's trained context). The fit work replaces `auto_ctx` below.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

AUTO = "auto"


def parse_ctx(value) -> int | str | None:
    """A ctx value from params or CTX: a positive int, "auto", or None; ValueError otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        if text.isdigit() and int(text) > 0:
            return int(text)
        raise ValueError(f"ctx must be a positive integer or \"auto\", not {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ValueError(f"ctx must be a positive integer or \"auto\", not {value!r}")


async def choose_ctx(requested, env_ctx: str | None, *, model_path: Path, engine: str,
                     on_progress: Callable[[dict], None]) -> int | None:
    ctx = parse_ctx(requested)
    if ctx is None:
        try:
            ctx = parse_ctx(env_ctx)
        except ValueError:
            ctx = None
    if ctx == AUTO:
        return await auto_ctx(env_ctx, model_path=model_path, engine=engine, on_progress=on_progress)
    return ctx


async def auto_ctx(env_ctx: str | None, *, model_path: Path, engine: str,
                   on_progress: Callable[[dict], None]) -> int | None:
    """Seam for the context-fit search (issue #7). Today: CTX's number as the upper bound, else None."""
    try:
        bound = parse_ctx(env_ctx)
    except ValueError:
        return None
    return bound if isinstance(bound, int) else None
