"""The supervisor's vocabulary: its states, its timings (which the daemon's flags set) and the
commands its owner task reads from its queue (engine/supervisor.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from remote_agent.engine.adapters.base import EngineConfig, EngineFailure

STOPPED, STARTING, READY, STOPPING, FAILED, PAUSED = "stopped", "starting", "ready", "stopping", "failed", "paused"

Emit = Callable[[str, dict], None]


def no_emit(kind: str, data: dict) -> None:
    """An Emit that sends nothing (nobody is listening)."""


@dataclass
class Timings:
    """Supervision timings in seconds (max_restarts: a count); the daemon's flags set them."""
    health_timeout: float = 600.0  # a 70B model from a network volume can take minutes
    health_interval: float = 0.1
    stop_grace: float = 10.0
    drain_timeout: float = 60.0
    restart_backoff: float = 1.0  # doubles per failure in a row, capped at max_backoff
    max_backoff: float = 30.0
    max_restarts: int = 3  # failures in a row beyond this → paused
    stable_after: float = 60.0  # ready this long: earlier failures are forgiven


@dataclass
class Command:
    """One request to the owner task: name selects its `_on_<name>` handler; token is the user-command
    token (or, for exit and hung notices, the launch generation) it was issued under."""
    name: str
    config: EngineConfig | None = None
    emit: Emit = no_emit
    token: int = 0
    failure: EngineFailure | None = None
    future: asyncio.Future | None = None
    # start only: run in the owner task once the engine is stopped and before the launch, so that what
    # a launch reads (an RPC server's endpoints) changes between launches, never during one
    reconfigure: Callable[[], None] | None = None
