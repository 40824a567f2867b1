"""What every engine adapter provides: its command line, how it is handed its API key, its health
check, whether it is busy, and how to read a failure from its exit status and its last log lines."""

from __future__ import annotations

import os
import shlex
import shutil
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from remote_agent.engine.adapters.classify import (  # noqa: F401 (re-exported: the adapters' vocabulary)
    BACKEND_HUNG, BACKEND_LOST, BACKEND_UNREACHABLE, BAD_MODEL, CRASHED, FAILURE_KINDS, HEALTH_TIMEOUT, MISSING_BINARY,
    OOM, PORT_IN_USE, RPC_VERSION, UNSUPPORTED, EngineFailure, classify, describe_exit)
from remote_agent.engine.ctx import FitRequest
from remote_agent.engine_key import FROM_ARGS, EngineKey

ENGINE_HOST = "127.0.0.1"  # engines listen on loopback only: they are reached through the SSH tunnel
HTTP, LISTENING = "http", "listening"  # how an engine shows it is ready (EngineAdapter.readiness)


class NothingFits(EngineFailure):
    """Not even the smallest context fits the memory: retrying cannot help, so the engine pauses."""

    def __init__(self, message: str) -> None:
        super().__init__(OOM, message)


class PausedUntil(EngineFailure):
    """A failure whose cause lies outside this pod and may go away by itself (an RPC backend that is
    down, frozen or of another build). The supervisor pauses, naming it, instead of crash-looping,
    and resumes by itself once `until()` returns. until: an async function that returns when the
    cause may be gone (it polls; cancelled when a person starts something else)."""

    def __init__(self, code: str, message: str, until: Callable[[], Awaitable[None]],
                 details: dict | None = None) -> None:
        super().__init__(code, message, details=details)
        self.until = until


@dataclass(frozen=True)
class EngineConfig:
    """One way to run an engine; persisted as the last good config."""

    engine: str
    model: str  # what the user asked for (MODEL form)
    model_path: str  # the GGUF file handed to the engine
    port: int
    ctx: int | None = None
    args: tuple[str, ...] = ()
    gpu_layers: int | None = None
    parallel: int | None = None
    batch_size: int | None = None
    ubatch_size: int | None = None
    max_tokens: int | None = None  # default reply length (--n-predict, koboldcpp --defaultgenamt)
    # Flags the context fit adds after ARGS (its own fit off, cache types, slots) so the engine
    # runs exactly the memory configuration that was estimated; kept with the persisted config.
    fit_args: tuple[str, ...] = ()
    bind: str | None = None  # the address the engine listens on; None: ENGINE_HOST (an RPC backend may differ)
    env: tuple[tuple[str, str], ...] = ()  # extra environment for the engine (an RPC backend's LLAMA_CACHE)
    # A pending context-fit search: the supervisor replaces it by a ctx.
    fit: FitRequest | None = field(default=None, compare=False)

    def to_dict(self) -> dict:
        """The persisted form, JSON-ready: every field but the pending fit; tuples become lists."""
        data = asdict(self)
        data.pop("fit", None)  # only resolved configs (a number as ctx) are persisted
        data["args"] = list(self.args)
        data["fit_args"] = list(self.fit_args)
        data["env"] = [list(pair) for pair in self.env]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "EngineConfig":
        """The inverse of to_dict; keys it does not know (from another agent version) are ignored."""
        known = {f for f in cls.__dataclass_fields__} - {"fit"}
        values = {k: v for k, v in data.items() if k in known}
        values["args"] = tuple(values.get("args") or ())
        values["fit_args"] = tuple(values.get("fit_args") or ())
        values["env"] = tuple(tuple(pair) for pair in values.get("env") or ())
        return cls(**values)

    @property
    def host(self) -> str:
        """The address the engine listens on."""
        return self.bind or ENGINE_HOST


@dataclass(frozen=True)
class FitLimits:
    """How an engine constrains a context fit (EngineAdapter.fit_limits)."""
    cache_type: str | None = None  # the KV cache type to estimate; None: from ARGS, else f16
    swa_full: bool = False  # the engine keeps a full-size cache for sliding-window layers
    ctx_max: int | None = None  # the largest context the engine accepts; None: no limit of its own
    flags: tuple[str, ...] = ()  # what the engine must be passed to run as estimated (koboldcpp: --useswa)


class EngineAdapter(ABC):
    """One engine kind. A subclass sets name, binary, health_path and busy_path and builds the
    command line; adapter_for makes a fresh instance per use. Failures are read by the one rule
    table in classify.py."""
    name: str
    binary: str

    def binary_path(self, bin_dir: Path | None) -> str:
        """The executable, from bin_dir when given, else PATH; raises missing_binary."""
        if bin_dir is not None:
            candidate = Path(bin_dir) / self.binary
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
            where = f"{bin_dir}"
        else:
            found = shutil.which(self.binary)
            if found:
                return found
            where = "PATH"
        raise EngineFailure(MISSING_BINARY, f"{self.binary} was not found in {where}; install it or point "
                            "--engine-bin-dir / REMOTE_AGENT_ENGINE_BIN_DIR at the folder that holds it")

    @abstractmethod
    def command(self, config: EngineConfig, bin_dir: Path | None, api_key: str | None = None) -> list[str]:
        """The full command line (ARGS, then the fit's flags, last, so they win where the engine allows it).
        api_key: the key the agent hands the engine (launch_key), for engines that take it as a flag."""

    # ---- the API key (remote_agent/engine_key.py) ----------------------------------------------
    key_flags: tuple[str, ...] = ()  # flags of ARGS that set the engine's key; their values are masked

    def args_key(self, args: tuple[str, ...] | list[str]) -> tuple[bool, str | None]:
        """(whether ARGS sets the engine's key, that key — None when the agent cannot read it)."""
        value = flag_value(args, self.key_flags)
        return (value is not None, value or None)

    def engine_key(self, args: tuple[str, ...] | list[str], agent_key: EngineKey) -> EngineKey:
        """The key an engine started with ARGS requires: the one ARGS sets, else the agent's."""
        in_args, value = self.args_key(args)
        return EngineKey(value, FROM_ARGS) if in_args else agent_key

    def launch_key(self, args: tuple[str, ...] | list[str], agent_key: EngineKey) -> str | None:
        """The key the agent must hand the engine: the agent's, unless ARGS sets one (respected,
        never doubled) or the user opted out."""
        return None if self.args_key(args)[0] else agent_key.value

    def key_environment(self, api_key: str | None) -> dict[str, str]:
        """Variables that hand the engine api_key (for engines that read it from their environment,
        which keeps it off the command line and out of `ps`); none by default."""
        return {}

    def loggable(self, command: list[str]) -> str:
        """command as one shell-quoted line with the value of every key flag masked: what is logged."""
        return shlex.join(masked_flags(command, self.key_flags))

    def check(self, config: EngineConfig, bin_dir: Path | None) -> None:
        """Refuse, before anything is stopped, a config the installed engine would reject (raises
        EngineFailure, code unsupported or missing_binary). May run the binary once: call it off
        the event loop. Nothing to check by default."""

    def fit_limits(self, config: EngineConfig, bin_dir: Path | None, cache_type: str | None) -> FitLimits:
        """What the installed engine allows a context fit (cache_type: the one the request asks for,
        or None). By default: whatever the request and ARGS say, no context limit."""
        return FitLimits(cache_type=cache_type)

    def fit_flags(self, run_config) -> list[str]:
        """Flags that pin the memory configuration a context fit estimated (fit.estimate.RunConfig)."""
        return []

    # HTTP: ready when health_path answers (is_healthy). LISTENING: ready when its port is in LISTEN
    # state (/proc/net/tcp) and started() says its start-up output is complete, for an engine that
    # must never be probed by connecting (ggml-rpc-server serves one client at a time).
    readiness: str = HTTP
    takes_key: bool = True  # False: the engine has no API key at all (ggml-rpc-server)
    # Start it with SIGPIPE ignored (ggml-rpc-server dies of it when a client leaves early, RPC.md fact 5).
    ignores_sigpipe: bool = False

    def started(self, lines: list[str]) -> bool:
        """For LISTENING engines: whether the output so far shows a complete start (default: yes)."""
        return True

    def describe(self, lines: list[str]) -> dict | None:
        """What the engine said about itself at start (status.engine_info), from its output lines;
        None by default."""
        return None

    health_path: str = "/health"

    def is_healthy(self, status: int, body: bytes) -> bool:
        """Whether a health_path answer (HTTP status, body bytes) means ready; by default status 200."""
        return status == 200

    ctx_path: str | None = None  # where the engine says the context it really runs

    def served_ctx(self, status: int, body: bytes) -> int | None:
        """The context size (tokens) from the ctx_path answer; None when it cannot tell."""
        return None

    busy_path: str | None = None

    def is_busy(self, status: int, body: bytes) -> bool | None:
        """Whether requests are in flight, from the busy_path answer; None when it cannot tell."""
        return None

    def classify(self, returncode: int | None, log_lines: list[str]) -> EngineFailure:
        """The EngineFailure of a process that failed (classify.classify: the rule table)."""
        return classify(self.name, returncode, log_lines)


def flag_value(args: tuple[str, ...] | list[str], flags: tuple[str, ...]) -> str | None:
    """The value of the last of flags in args (`--flag VALUE` or `--flag=VALUE`), or None."""
    found = None
    for i, arg in enumerate(args):
        for flag in flags:
            if arg == flag and i + 1 < len(args):
                found = args[i + 1]
            elif arg.startswith(flag + "="):
                found = arg[len(flag) + 1:]
    return found


def masked_flags(command: list[str], flags: tuple[str, ...]) -> list[str]:
    """command with the value after each of flags (or after `flag=`) replaced by ***."""
    out = list(command)
    for i, arg in enumerate(out):
        for flag in flags:
            if arg == flag and i + 1 < len(out):
                out[i + 1] = "***"
            elif arg.startswith(flag + "="):
                out[i] = f"{flag}=***"
    return out


def optional_flag(flag: str, value: int | None) -> list[str]:
    """[flag, str(value)], or [] when value is None."""
    return [] if value is None else [flag, str(value)]
