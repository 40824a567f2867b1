"""DirectLink: an engine at a fixed URL that nobody supervises for the worker (tests, local use).

`remote-agent serverless-worker --engine-url http://127.0.0.1:P --engine llama-server` runs the
worker against an engine someone else started; its key comes from the environment (API_KEY, never
the command line). Without a daemon nobody classifies a failure, so a broken answer is
engine_unreachable (nothing answers the health check any more) or engine_lost (the engine is healthy
but cut the answer off). Health is the adapter's own check (llama-server /health, koboldcpp
/api/v1/model). Standard library only.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from remote_agent.engine.adapters import adapter_for
from remote_agent.engine.httpget import http_get
from remote_agent.serverless.errors import ENGINE_LOST, ENGINE_UNREACHABLE, JobError
from remote_agent.serverless.link import RESTART_WAIT_S, EngineTarget, Report

POLL_S = 0.1


class DirectLink:
    """The EngineLink (serverless/link.py) for an engine at base_url ("http://127.0.0.1:PORT")."""

    def __init__(self, base_url: str, engine: str, api_key: str | None, *,
                 restart_wait_s: float = RESTART_WAIT_S) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.port:
            raise ValueError(f"--engine-url {base_url!r} must look like http://127.0.0.1:PORT")
        self.adapter = adapter_for(engine)  # raises KeyError for an unknown engine
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port
        self._target = EngineTarget(base_url.rstrip("/"), engine, None, api_key)
        self.restart_wait_s = restart_wait_s

    async def healthy(self) -> bool:
        """Whether the engine's health check passes now (never raises)."""
        try:
            status, body = await http_get(self.port, self.adapter.health_path, timeout=2.0, host=self.host)
        except (OSError, asyncio.TimeoutError):
            return False
        return self.adapter.is_healthy(status, body)

    async def _wait_healthy(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not await self.healthy():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(POLL_S)
        return True

    async def settle(self, timeout_s: float, report: Report) -> None:
        """See EngineLink.settle."""
        if await self._wait_healthy(timeout_s):
            report(f"engine ready: {self._target.engine} at {self._target.base_url}")
        else:
            report(f"nothing healthy at {self._target.base_url} after {timeout_s:g} s: taking jobs anyway")

    async def target(self) -> EngineTarget:
        """See EngineLink.target: always the one URL."""
        return self._target

    async def recover(self, stale: EngineTarget) -> EngineTarget:
        """See EngineLink.recover."""
        if await self._wait_healthy(self.restart_wait_s):
            return self._target
        raise self._unreachable()

    async def failure(self, stale: EngineTarget) -> JobError:
        """See EngineLink.failure."""
        if await self.healthy():
            return JobError(ENGINE_LOST, "the engine broke off its answer but still runs", "send the request again",
                            engine=self._target.engine)
        return self._unreachable()

    def _unreachable(self) -> JobError:
        return JobError(ENGINE_UNREACHABLE, f"the engine at {self._target.base_url} does not answer",
                        "start it again (this worker was pointed at it with --engine-url and supervises nothing)",
                        engine=self._target.engine)
