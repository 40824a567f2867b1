"""What the serverless worker reads from the endpoint's environment. Standard library only: boot
checks the same values before it starts anything (a bad one is a clear error, not a dead worker).

- MAX_CONCURRENCY (worker-vllm's and seed 002's name), else CONCURRENCY_MODIFIER (seed 001's), else 1:
  how many jobs one worker runs at once. The SDK's `concurrency_modifier` returns it, constant — a
  modifier whose answer changes stalls job intake until the worker drains (SERVERLESS.md §1.5).
- REQUEST_TIMEOUT (worker-vllm's name, §2.2), seconds, default 600 (Runpod's default execution
  timeout, §3.3): the longest the worker waits for the engine's next bytes. An engine that dies
  closes its connections and fails the job at once; this bounds one that hangs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

CONCURRENCY_NAMES = ("MAX_CONCURRENCY", "CONCURRENCY_MODIFIER")  # first set wins
MAX_CONCURRENCY_LIMIT = 256  # llama-server takes more slots, but a larger number is almost surely a typo
DEFAULT_REQUEST_TIMEOUT_S = 600.0


class ServerlessConfigError(ValueError):
    """A bad serverless variable; the message names it and says what to set."""


@dataclass(frozen=True)
class Concurrency:
    """How many jobs at once (`value`) and which variable said so (`source`: a name, or "default")."""
    value: int
    source: str


def concurrency_from(env: Mapping[str, str]) -> Concurrency:
    """MAX_CONCURRENCY, else CONCURRENCY_MODIFIER, else 1. Raises ServerlessConfigError for a value
    that is not a whole number from 1 to MAX_CONCURRENCY_LIMIT."""
    for name in CONCURRENCY_NAMES:
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            value = int(raw)
        except ValueError:
            raise ServerlessConfigError(f"{name}={raw!r} is not a whole number; set how many jobs one worker "
                                        "runs at once, e.g. 4, or unset it for 1") from None
        if not 1 <= value <= MAX_CONCURRENCY_LIMIT:
            raise ServerlessConfigError(f"{name}={value} must be from 1 to {MAX_CONCURRENCY_LIMIT} "
                                        "(jobs one worker runs at once)")
        return Concurrency(value, name)
    return Concurrency(1, "default")


def request_timeout_from(env: Mapping[str, str]) -> float:
    """REQUEST_TIMEOUT in seconds (default 600). Raises ServerlessConfigError unless it is a positive number."""
    raw = env.get("REQUEST_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_REQUEST_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise ServerlessConfigError(f"REQUEST_TIMEOUT={raw!r} is not a number of seconds; set e.g. 600, "
                                    "or unset it") from None
    if value <= 0:
        raise ServerlessConfigError(f"REQUEST_TIMEOUT={raw} must be positive (seconds)")
    return value
