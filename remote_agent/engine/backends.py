"""An RPC cluster server's backends: asked before every llama-server start, and waited for.

llama-server aborts on any backend failure, and it hangs forever on a backend that accepts
connections but never answers (RPC.md §2.4). So before each launch the agent does the RPC
handshake with every backend itself (engine/rpc_wire.hello, with a deadline), while llama-server is
down and nobody else holds the backend's single client slot. It compares each answer with the
protocol of its own build (engine/rpc_build.rpc_banner) by the client's rule, and it refuses to
start while any backend is missing, silent or of another build. The refusal is a PausedUntil that
names every such backend. The supervisor pauses instead of crash-looping, and `until()` polls the
backends until every one answers correctly. Then llama-server starts again by itself.

After llama-server aborts mid-request ("Remote RPC server crashed", which names no backend), the
supervisor restarts it at once, so this check runs within about a second of the abort (the abort
itself takes 0.8–1.3 s with gdb installed). It names the backend that is still down. A backend
whose own agent restarted it before then answers again: llama-server simply starts, and the
failure it logged said it could not tell which backend it was.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from remote_agent.engine.adapters.base import (
    BACKEND_HUNG, BACKEND_UNREACHABLE, RPC_VERSION, EngineConfig, PausedUntil)
from remote_agent.engine.adapters.classify import SAME_BUILD
from remote_agent.engine.roles import Endpoint
from remote_agent.engine.rpc_wire import CLOSED, REFUSED, SILENT, BackendProbeError, RpcVersion, hello

OK, MISMATCH = "answers", "mismatch"  # Probe.state besides rpc_wire's REFUSED, SILENT, CLOSED
log = logging.getLogger("remote_agent.backends")


@dataclass(frozen=True)
class Probe:
    """One backend's last handshake: state (answers, mismatch, refused, silent, closed), the
    protocol it answered (or None), the OS's words when it failed, and when (monotonic seconds)."""
    endpoint: Endpoint
    state: str
    protocol: RpcVersion | None = None
    detail: str = ""
    at: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the backend answered with a protocol this build accepts."""
        return self.state == OK

    def to_dict(self) -> dict:
        """status's form: {"endpoint", "state", "protocol", "checked_s_ago"}."""
        return {"endpoint": str(self.endpoint), "state": self.state,
                "protocol": str(self.protocol) if self.protocol else None,
                "checked_s_ago": round(time.monotonic() - self.at, 1)}


class BackendGuard:
    """The backends of one server (in --rpc order). client: the RPC protocol this pod's build speaks
    (None: unknown, then only reachability is checked); timeout_s: the handshake deadline; poll_s:
    how often a paused server asks again."""

    def __init__(self, backends: tuple[Endpoint, ...], client: RpcVersion | None, build: str | None,
                 timeout_s: float = 5.0, poll_s: float = 2.0) -> None:
        self.backends = backends
        self.client = client
        self.build = build
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.last: dict[Endpoint, Probe] = {}
        # endpoint ("127.0.0.1:60151") -> the name of the SSH link serving it, when one does (the
        # agent sets it): a link accepts the connection and then closes it when nothing listens
        # behind it, which on the wire looks like a backend of another protocol generation.
        self.link_for: Callable[[str], str | None] = lambda endpoint: None

    async def probe(self, endpoint: Endpoint) -> Probe:
        """One handshake with endpoint, remembered for status. Never raises."""
        try:
            version = await hello(endpoint.host, endpoint.port, self.timeout_s)
        except BackendProbeError as exc:
            result = Probe(endpoint, exc.reason, None, exc.detail, time.monotonic())
        else:
            fits = self.client is None or version.serves(self.client)
            result = Probe(endpoint, OK if fits else MISMATCH, version, "", time.monotonic())
        self.last[endpoint] = result
        return result

    async def probe_all(self) -> list[Probe]:
        """Every backend's handshake, side by side."""
        return list(await asyncio.gather(*(self.probe(endpoint) for endpoint in self.backends)))

    async def preflight(self, config: EngineConfig) -> None:
        """Before llama-server starts: returns when every backend answers with a protocol this build
        accepts. Raises PausedUntil naming each one that does not (code backend_unreachable,
        backend_hung or rpc_version_mismatch, after the first one's problem), whose until() returns
        once all of them answer."""
        bad = [probe for probe in await self.probe_all() if not probe.ok]
        if not bad:
            return
        first = bad[0]
        code = {REFUSED: BACKEND_UNREACHABLE, SILENT: BACKEND_HUNG}.get(first.state, RPC_VERSION)
        if first.state == CLOSED and self.link_for(str(first.endpoint)):
            code = BACKEND_UNREACHABLE
        message = "; ".join(self.explain(probe) for probe in bad)
        log.warning("llama-server not started: %s", message)
        raise PausedUntil(code, f"{message}. Paused: llama-server starts by itself once every backend answers",
                          self.until_all_answer, details={"backend": str(first.endpoint),
                                                          "backends_down": [str(p.endpoint) for p in bad]})

    async def until_all_answer(self) -> None:
        """Return once every backend answers the handshake with a protocol this build accepts
        (asking every poll_s seconds)."""
        while True:
            await asyncio.sleep(self.poll_s)
            if all(probe.ok for probe in await self.probe_all()):
                log.info("every RPC backend answers again: %s", ", ".join(str(b) for b in self.backends))
                return

    def explain(self, probe: Probe) -> str:
        """One sentence: what is wrong with probe's backend and what to do."""
        where = f"backend {probe.endpoint}"
        if probe.state == REFUSED:
            return (f"{where} is unreachable ({probe.detail}): no ggml-rpc-server listens there; its pod's agent "
                    "restarts a crashed one by itself, else start that pod (APP_MODE=backend) or fix APP_RPC_BACKENDS")
        if probe.state == SILENT:
            return (f"{where} accepts connections but does not answer the RPC handshake within {self.timeout_s:g}s: "
                    "it is frozen, overloaded, or serving another client (it serves one at a time)")
        ours = f"{self.client or 'an unknown version'}" + (f" (llama.cpp {self.build})" if self.build else "")
        if probe.state == CLOSED and (link := self.link_for(str(probe.endpoint))):
            return (f"backend {link} (its link at {probe.endpoint} is up) closed the RPC handshake: its "
                    "ggml-rpc-server is down or restarting (its pod's agent restarts it; `podtui cluster status` "
                    f"shows it), or it runs another llama.cpp build than this pod's {ours}: {SAME_BUILD}")
        if probe.state == CLOSED:
            return (f"{where} closed the connection during the RPC handshake ({probe.detail}), as a server of "
                    f"another protocol generation does; this pod speaks {ours}: {SAME_BUILD}")
        return f"{where} speaks RPC protocol {probe.protocol}, this pod's {ours}: {SAME_BUILD}"

    def snapshot(self) -> list[dict]:
        """status's "backends": each backend's last probe ({"endpoint", "state": "unknown"} before any)."""
        return [self.last[b].to_dict() if b in self.last else {"endpoint": str(b), "state": "unknown",
                                                                 "protocol": None, "checked_s_ago": None}
                for b in self.backends]
