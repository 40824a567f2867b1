"""What every engine adapter provides: its command line, how it is handed its API key, its health
check, whether it is busy, and how to read a failure from its exit status and its last log lines."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path

from remote_agent.engine.ctx import FitRequest
from remote_agent.engine_key import FROM_ARGS, EngineKey
from remote_agent.protocol import WireError

# Failure codes (the `kind` of status.last_error and the `code` of a failed engine request).
OOM = "oom"
BAD_MODEL = "bad_model"
PORT_IN_USE = "port_in_use"
MISSING_BINARY = "missing_binary"
CRASHED = "crashed"
HEALTH_TIMEOUT = "health_timeout"
FAILURE_KINDS = (OOM, BAD_MODEL, PORT_IN_USE, MISSING_BINARY, CRASHED, HEALTH_TIMEOUT)

ENGINE_HOST = "127.0.0.1"  # engines listen on loopback only: they are reached through the SSH tunnel


class EngineFailure(WireError):
    """An engine that would not start or stopped serving; `code` is one of FAILURE_KINDS (or the
    fit's fit_error / search kinds), `log_tail` the engine's last output lines."""

    def __init__(self, code: str, message: str, log_tail: list[str] | None = None) -> None:
        super().__init__(code, message)
        self.log_tail = log_tail or []

    def to_dict(self) -> dict:
        """status.last_error's shape: {"kind": code, "message": message}."""
        return {"kind": self.code, "message": self.message}


class NothingFits(EngineFailure):
    """Not even the smallest context fits the memory: retrying cannot help, so the engine pauses."""

    def __init__(self, message: str) -> None:
        super().__init__(OOM, message)


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
    # A pending context-fit search: the supervisor replaces it by a ctx.
    fit: FitRequest | None = field(default=None, compare=False)

    def to_dict(self) -> dict:
        """The persisted form, JSON-ready: every field but the pending fit; tuples become lists."""
        data = asdict(self)
        data.pop("fit", None)  # only resolved configs (a number as ctx) are persisted
        data["args"] = list(self.args)
        data["fit_args"] = list(self.fit_args)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "EngineConfig":
        """The inverse of to_dict; keys it does not know (from another agent version) are ignored."""
        known = {f for f in cls.__dataclass_fields__} - {"fit"}
        values = {k: v for k, v in data.items() if k in known}
        values["args"] = tuple(values.get("args") or ())
        values["fit_args"] = tuple(values.get("fit_args") or ())
        return cls(**values)


@dataclass
class FailurePatterns:
    """Log-line patterns per failure kind, checked in this order (OOM first: an out-of-memory
    start also ends with llama.cpp's generic "model loading error")."""

    oom: list[str] = field(default_factory=list)
    port_in_use: list[str] = field(default_factory=list)
    bad_model: list[str] = field(default_factory=list)

    def compiled(self) -> list[tuple[str, re.Pattern]]:
        """[(kind, one case-insensitive regex of its patterns)] in checking order; kinds without
        patterns are left out."""
        return [(kind, re.compile("|".join(patterns), re.IGNORECASE))
                for kind, patterns in ((OOM, self.oom), (PORT_IN_USE, self.port_in_use), (BAD_MODEL, self.bad_model))
                if patterns]


# llama.cpp's own lines, shared by every engine built on ggml (koboldcpp included).
GGML_OOM = [
    r"insufficient memory", r"failed to allocate", r"out of memory", r"cudaMalloc failed",
    r"unable to allocate", r"std::bad_alloc", r"CUDA error: out of memory",
]


class EngineAdapter(ABC):
    """One engine kind. A subclass sets name, binary, patterns, health_path and busy_path and builds
    the command line; adapter_for makes a fresh instance per use."""
    name: str
    binary: str
    patterns: FailurePatterns

    def __init__(self) -> None:
        self._compiled = self.patterns.compiled()

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

    def fit_flags(self, run_config) -> list[str]:
        """Flags that pin the memory configuration a context fit estimated (fit.estimate.RunConfig)."""
        return []

    health_path: str = "/health"

    def is_healthy(self, status: int, body: bytes) -> bool:
        """Whether a health_path answer (HTTP status, body bytes) means ready; by default status 200."""
        return status == 200

    busy_path: str | None = None

    def is_busy(self, status: int, body: bytes) -> bool | None:
        """Whether requests are in flight, from the busy_path answer; None when it cannot tell."""
        return None

    def classify(self, returncode: int | None, log_lines: list[str]) -> EngineFailure:
        """The EngineFailure of a process that failed, from its exit status (None: never ran) and output:
        the first kind whose patterns match (OOM first), else crashed. The message quotes the matching (or
        last) line and the fix; log_tail holds the last 20 lines."""
        text = "\n".join(log_lines)
        for kind, pattern in self._compiled:
            match = pattern.search(text)
            if match:
                line = next((l for l in log_lines if pattern.search(l)), match.group(0))
                return EngineFailure(kind, f"{self.name} {describe_exit(returncode)}: {line.strip()}"
                                     f"{FIXES[kind]}", log_lines[-20:])
        last = next((l.strip() for l in reversed(log_lines) if l.strip()), "no output")
        return EngineFailure(CRASHED, f"{self.name} {describe_exit(returncode)}; last line: {last}", log_lines[-20:])


FIXES = {
    OOM: " — not enough (GPU) memory: lower the context (ctx / CTX), offload fewer layers, or pick a smaller quant",
    PORT_IN_USE: " — another process holds the engine port: stop it or set PORT",
    BAD_MODEL: " — the model file is not a loadable GGUF: download it again or pick another",
}


def describe_exit(returncode: int | None) -> str:
    """"exited with code N", "was killed by SIGKILL", or "failed" (returncode None), for messages."""
    if returncode is None:
        return "failed"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


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
