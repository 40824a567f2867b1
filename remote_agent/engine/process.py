"""One live engine process: spawn it in its own process group with its API key, pump its output
into the log buffer (the key masked), wait for health, and stop it (SIGTERM the group, grace
period, SIGKILL the group). Every request the agent sends the engine carries the key.

An engine whose adapter says readiness LISTENING (ggml-rpc-server) is never connected to: its port
is looked up in /proc/net/tcp (engine/rpc_wire.listening), both before the start (port_in_use) and
for readiness. Engines that die of SIGPIPE start with it ignored."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import deque
from dataclasses import dataclass, field

from remote_agent.child_env import without_secrets
from remote_agent.engine.adapters.base import (
    HEALTH_TIMEOUT, LISTENING, MISSING_BINARY, PORT_IN_USE, EngineAdapter, EngineConfig, EngineFailure)
from remote_agent.engine.httpget import http_get, port_is_open
from remote_agent.engine.logbuf import LogBuffer
from remote_agent.engine.rpc_wire import listening
from remote_agent.engine_key import KEYLESS, EngineKey, auth_headers, masked
from remote_agent.procgroup import terminate_async

TAIL_LINES = 200  # kept per process to classify its failure
BANNER_WAIT_S = 2.0  # a LISTENING engine is ready this long after its port listens, banner or not
log = logging.getLogger("remote_agent.engine")


@dataclass
class EngineProcess:
    """One spawned engine: config, adapter, the asyncio process and its launch generation;
    started_at/ready_at in monotonic seconds; the last TAIL_LINES output lines; the task pumping its
    output and the task `exited` (proc.wait()), done when it has exited. key: the API key it
    requires (EngineKey.value None: keyless, or a key ARGS set that the agent cannot read)."""
    config: EngineConfig
    adapter: EngineAdapter
    proc: asyncio.subprocess.Process
    generation: int
    key: EngineKey = field(default=KEYLESS, repr=False)
    started_at: float = field(default_factory=time.monotonic)
    ready_at: float | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    pump: asyncio.Task | None = None
    exited: asyncio.Task | None = None
    info: dict | None = None  # what it said about itself at start (adapter.describe), set when ready

    @property
    def pid(self) -> int:
        """The engine's pid, which is also its process-group id (it leads its own group)."""
        return self.proc.pid

    @property
    def headers(self) -> dict[str, str]:
        """What every request the agent sends this engine carries: its key."""
        return auth_headers(self.key.value)

    def failure(self) -> EngineFailure:
        """The adapter's reading of its exit status and output tail (an EngineFailure, not raised)."""
        return self.adapter.classify(self.proc.returncode, list(self.tail))


def _limiter(limit_bytes: int | None, stack_bytes: int | None = None):
    if not limit_bytes and not stack_bytes:
        return None

    def apply() -> None:  # runs in the child before exec: the CPU stand-in for a GPU's memory
        if stack_bytes:  # glibc sizes thread stacks from it; RLIMIT_AS counts every reserved stack
            resource.setrlimit(resource.RLIMIT_STACK, (stack_bytes, stack_bytes))
        if limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


def vm_peak_bytes(pid: int) -> int | None:
    """The process's peak virtual size (what RLIMIT_AS limits), or None where /proc cannot tell."""
    try:
        for line in open(f"/proc/{pid}/status").read().splitlines():
            if line.startswith("VmPeak:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


async def spawn(config: EngineConfig, adapter: EngineAdapter, generation: int, logbuf: LogBuffer, *,
                bin_dir, address_space_limit: int | None, stack_limit: int | None = None,
                agent_key: EngineKey | None = None) -> EngineProcess:
    """Start the engine for config in its own process group, with the environment minus secrets,
    the agent's API key (agent_key; a key in config.args wins) as the adapter takes it, and the
    optional RLIMIT_AS / RLIMIT_STACK (bytes); its output goes to logbuf ("engine"), the key
    masked. Returns at once, before health (see wait_healthy). Raises EngineFailure
    missing_binary (not found, not executable) or port_in_use (something already listens on
    config.port)."""
    agent_key = agent_key or KEYLESS
    handed = adapter.launch_key(config.args, agent_key)
    key = adapter.engine_key(config.args, agent_key)
    command = adapter.command(config, bin_dir, handed)  # raises missing_binary
    if await _port_taken(adapter, config):
        raise EngineFailure(PORT_IN_USE, f"something already listens on {config.host}:{config.port}, the engine "
                            "port — stop that process or set PORT (APP_PORT for an RPC backend) to a free port")
    try:
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            env={**without_secrets(), **dict(config.env), **adapter.key_environment(handed)},
            # Python ignores SIGPIPE; restore_signals=False hands that on to the engine.
            restore_signals=not adapter.ignores_sigpipe,
            preexec_fn=_limiter(address_space_limit, stack_limit))
    except (FileNotFoundError, PermissionError) as exc:
        raise EngineFailure(MISSING_BINARY, f"cannot run {command[0]}: {exc.strerror}; install {adapter.binary} "
                            "or point --engine-bin-dir at it") from None
    log.info("started %s (pid %d, %s): %s", adapter.name, proc.pid,
             _key_words(key) if adapter.takes_key else "it takes no API key", adapter.loggable(command))
    engine = EngineProcess(config, adapter, proc, generation, key=key)
    engine.pump = asyncio.create_task(_pump_output(proc.stdout, engine.tail, logbuf, [key.value, handed]))
    engine.exited = asyncio.create_task(proc.wait())
    return engine


async def _port_taken(adapter: EngineAdapter, config: EngineConfig) -> bool:
    if adapter.readiness == LISTENING:  # never connect to what may be a ggml-rpc-server
        return listening(config.port, config.host)
    return await port_is_open(config.port)


def _key_words(key: EngineKey) -> str:
    """"API key: generated" / "API key: ARGS" / "no API key: API_KEY=none": where the key came from."""
    return f"no API key: {key.source}" if key.opted_out else f"API key: {key.source}"


async def _pump_output(stream: asyncio.StreamReader, tail: deque, logbuf: LogBuffer, keys: list[str | None]) -> None:
    """Engine output → log buffer, keys masked (koboldcpp prints its arguments, --password too).
    Overlong lines arrive in chunks; the engine never waits on a reader."""
    while True:
        try:
            raw = await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            raw = exc.partial
            if not raw:
                return
        except asyncio.LimitOverrunError as exc:
            raw = await stream.read(exc.consumed)
        except (OSError, ValueError):
            return
        line = masked(raw.decode("utf-8", errors="replace").rstrip("\r\n"), keys)
        tail.append(line)
        logbuf.append("engine", line)


async def _settle_output(engine: EngineProcess) -> None:
    if engine.pump is not None:
        try:
            await asyncio.wait_for(asyncio.shield(engine.pump), 2.0)
        except (asyncio.TimeoutError, Exception):
            pass


async def wait_healthy(engine: EngineProcess, timeout: float, interval: float = 0.1) -> None:
    """Poll the adapter's health endpoint every interval seconds until it answers ready (then
    ready_at is set). Raises the adapter's EngineFailure when the process exits first, and
    health_timeout (after stopping it) when timeout seconds pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    listening_since: float | None = None
    while True:
        await asyncio.wait({engine.exited}, timeout=interval)
        if engine.exited.done():
            await _settle_output(engine)
            raise engine.failure()
        if engine.adapter.readiness == LISTENING:
            if listening_since is None and listening(engine.config.port, engine.config.host):
                listening_since = loop.time()
            ready = listening_since is not None and (engine.adapter.started(list(engine.tail))
                                                     or loop.time() - listening_since > BANNER_WAIT_S)
        else:
            ready = await _answers_health(engine)
        if ready:
            engine.ready_at = time.monotonic()
            engine.info = engine.adapter.describe(list(engine.tail))
            return
        if loop.time() > deadline:
            await terminate(engine, grace_s=2.0)
            what = (f"listen on {engine.config.host}:{engine.config.port}" if engine.adapter.readiness == LISTENING
                    else f"answer {engine.adapter.health_path} as ready")
            raise EngineFailure(HEALTH_TIMEOUT, f"{engine.adapter.name} did not {what} within {timeout:.0f}s; it was "
                                "stopped — look at `logs.tail` for why, or raise the health timeout for very large "
                                "models", list(engine.tail)[-20:])


async def _answers_health(engine: EngineProcess) -> bool:
    try:
        status, body = await http_get(engine.config.port, engine.adapter.health_path, timeout=1.0,
                                      headers=engine.headers)
    except (OSError, asyncio.TimeoutError):
        return False
    return engine.adapter.is_healthy(status, body)


async def terminate(engine: EngineProcess, grace_s: float) -> None:
    """SIGTERM the engine's process group, wait grace_s (seconds), then SIGKILL the group (also
    when it left in time: that takes helpers it left behind); returns once it has exited and its
    output is in the log buffer. Never raises for an engine that is already gone."""
    # start_new_session: the engine leads its own group
    if not await terminate_async(engine.proc.pid, engine.exited, grace_s):
        log.warning("%s (pid %d) ignored SIGTERM for %.0fs; it was killed with SIGKILL", engine.adapter.name,
                    engine.pid, grace_s)
    await _settle_output(engine)


async def _ask(engine: EngineProcess, path: str | None, read, timeout: float):
    """read(status, body) of GET path on the engine, or None when there is no such path or no answer."""
    if path is None:
        return None
    try:
        status, body = await http_get(engine.config.port, path, timeout=timeout, headers=engine.headers)
    except (OSError, asyncio.TimeoutError):
        return None
    return read(status, body)


async def served_ctx(engine: EngineProcess) -> int | None:
    """The context size (tokens) the engine really runs, from the adapter's ctx_path; None when it
    cannot tell. Never raises."""
    return await _ask(engine, engine.adapter.ctx_path, engine.adapter.served_ctx, 2.0)


async def is_busy(engine: EngineProcess) -> bool | None:
    """Whether the engine has requests in flight (None: the engine cannot tell us)."""
    return await _ask(engine, engine.adapter.busy_path, engine.adapter.is_busy, 1.0)


async def drain(engine: EngineProcess, timeout_s: float, emit) -> None:
    """Wait (at most timeout_s seconds) until the engine has no request in flight, so a swap cuts
    nobody off; emit(kind, data) gets "progress" events (phase "drain") while it waits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    announced = False
    while await is_busy(engine):
        if not announced:
            emit("progress", {"phase": "drain", "message": "waiting for in-flight requests to finish"})
            announced = True
        if loop.time() > deadline:
            log.warning("requests still in flight after %.0fs; swapping anyway", timeout_s)
            emit("progress", {"phase": "drain", "message": "drain timed out; in-flight requests are cut"})
            return
        await asyncio.sleep(0.1)
