"""Which context size to start an engine with.

An explicit number wins. `auto` (in the request, or CTX=auto in the environment) asks for the
context-fit search (remote_agent/fit/, run by the supervisor at launch time): the answer is then a
FitRequest, not a number. When CTX is a number and a request asks for `auto`, CTX is the search's
upper bound (ARCHITECTURE.md, "Image environment").
"""

from __future__ import annotations

from dataclasses import dataclass

AUTO = "auto"


@dataclass(frozen=True)
class FitRequest:
    """Search the largest ctx that keeps the model on the GPU, at launch (supervisor + fit package)."""
    ctx_cap: int | None = None        # CTX's number or fit.search's ctx_max; None: the trained context
    fresh: bool = False               # ignore a remembered result
    cache_type: str | None = None     # KV cache type for K and V (fit.search); None: from ARGS, else f16
    budget_bytes: int | None = None   # an explicit budget for this search only
    # An RPC cluster's server: each device's budget in MiB, in --rpc order (fit/devices.py); None:
    # each device's free memory less llama.cpp's default 1024 MiB margin.
    device_budgets_mib: tuple[int, ...] | None = None


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


def _env_ctx(env_ctx: str | None) -> int | str | None:
    try:
        return parse_ctx(env_ctx)
    except ValueError:
        return None


def choose_ctx(requested, env_ctx: str | None, *, fresh: bool = False) -> int | FitRequest | None:
    """A number, a FitRequest (auto), or None (the engine's default: the model's trained context)."""
    ctx = parse_ctx(requested)
    env = _env_ctx(env_ctx)
    if ctx is None:
        ctx = env
    if ctx == AUTO:
        return FitRequest(ctx_cap=env if isinstance(env, int) else None, fresh=fresh)
    return ctx
