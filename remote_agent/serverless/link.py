"""Where the engine is, and why it failed a job: what the handler asks of an EngineLink.

Two links: DaemonLink (daemon_link.py) asks the agent daemon that supervises the engine — the image's
path, where a failure is named by the daemon's own classification (status.last_error); DirectLink
(direct_link.py) points at an engine someone else runs, for tests and local use, and can only say
that the engine stopped answering. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from remote_agent.serverless.errors import JobError

RESTART_WAIT_S = 60.0  # a job that finds the engine restarting waits this long for it
Report = Callable[[str], None]


@dataclass(frozen=True)
class EngineTarget:
    """The engine a job goes to: base_url ("http://127.0.0.1:5002"), engine ("llama-server" |
    "koboldcpp"), its pid when the daemon told it (to notice a restart), and its API key (None:
    keyless), sent as a bearer token."""
    base_url: str
    engine: str
    pid: int | None = None
    api_key: str | None = field(default=None, repr=False)

    def headers(self) -> dict[str, str]:
        """The Authorization header the engine requires ({} for a keyless engine)."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


class EngineLink(Protocol):
    """What the handler needs to know about the engine. Every method is a coroutine and raises only
    JobError (serverless/errors.py), whose kind names the failure."""

    async def settle(self, timeout_s: float, report: Report) -> None:
        """At worker start, before any job is taken: wait until the engine serves, or has failed for
        good (paused), reporting each change as one line; at most timeout_s seconds. Never raises:
        a failed engine fails each job with its reason instead."""

    async def target(self) -> EngineTarget:
        """The engine to send a job to (cached after the first answer); raises JobError when none
        serves and none is coming back within RESTART_WAIT_S."""

    async def recover(self, stale: EngineTarget) -> EngineTarget:
        """After a refused connection (nothing was sent): wait, bounded by RESTART_WAIT_S, for the engine
        to serve again and return it; raises JobError with the reason otherwise."""

    async def failure(self, stale: EngineTarget) -> JobError:
        """After an answer broke off mid-job: the JobError that says why (the daemon's failure kind once
        its supervisor has seen the exit)."""

