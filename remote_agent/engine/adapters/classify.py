"""Why an engine failed, read from its exit status and its last log lines: one table of rules.

Each rule is (kind, regex, advice, which engines, a real line it was written for). The first rule
whose regex matches any line wins, in table order: out-of-memory first (an out-of-memory start
also ends with llama.cpp's generic "error loading model"), then a busy port, then model problems;
nothing matched → `crashed`, quoting the most telling line. Lines matching IGNORED are warnings
the engine survives and are dropped before any rule is tried (otherwise a harmless "failed to
allocate … pinned memory" at load would turn every later crash into `oom`).

A rule's named groups are details the failure carries (status.last_error shows them): `backend`
is the RPC backend a line is about (llama-server's `--rpc` endpoint, host:port), and
`backend_protocol` is the protocol version a backend answered.

Every example line is a real engine's output: llama.cpp (commit 0c1e57098, the test bed's build),
koboldcpp 1.76 (tests/remote_agent/engine/test_koboldcpp_real.py runs it into these failures), or
quoted from public reports where the test bed cannot produce it (CUDA-only lines). The README's
"How failures are classified" table is rules_table()'s output; a test keeps them equal.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

from remote_agent.fit.oom import PINNED_MEMORY_WARNING
from remote_agent.protocol import WireError

# Failure codes (the `kind` of status.last_error and the `code` of a failed engine request).
OOM = "oom"
BAD_MODEL = "bad_model"
PORT_IN_USE = "port_in_use"
MISSING_BINARY = "missing_binary"
CRASHED = "crashed"
HEALTH_TIMEOUT = "health_timeout"
UNSUPPORTED = "unsupported"  # refused before anything is stopped: the installed engine cannot run that setting
# An RPC cluster's server (RPC.md §2.4): a backend it cannot reach, that speaks another protocol,
# that failed mid-request, or that stopped answering (the liveness check found llama-server hung).
BACKEND_UNREACHABLE = "backend_unreachable"
RPC_VERSION = "rpc_version_mismatch"
BACKEND_LOST = "backend_lost"
BACKEND_HUNG = "backend_hung"
FAILURE_KINDS = (OOM, BAD_MODEL, PORT_IN_USE, MISSING_BINARY, CRASHED, HEALTH_TIMEOUT, UNSUPPORTED,
                 BACKEND_UNREACHABLE, RPC_VERSION, BACKEND_LOST, BACKEND_HUNG)

LLAMA, KOBOLD, RPC = "llama-server", "koboldcpp", "ggml-rpc-server"
BOTH = (LLAMA, KOBOLD)  # koboldcpp is built on llama.cpp's ggml: it prints the same lines
ALL = (LLAMA, KOBOLD, RPC)  # the RPC lines are ggml's own, whichever program links it
SAME_BUILD = "run the same llama.cpp build on every pod (the image podtui launches pins one)"

LOWER = "lower the context (ctx / CTX), offload fewer layers, or pick a smaller quant"
LOWER_MEMORY = "not enough (GPU) memory: " + LOWER
RELOAD = "the model file is not a loadable GGUF: download it again or pick another"


class EngineFailure(WireError):
    """An engine that would not start or stopped serving; `code` is one of FAILURE_KINDS (or the
    fit's fit_error / search kinds), `log_tail` the engine's last output lines."""

    def __init__(self, code: str, message: str, log_tail: list[str] | None = None,
                 details: dict | None = None) -> None:
        super().__init__(code, message)
        self.log_tail = log_tail or []
        self.details = details or {}  # e.g. {"backend": "10.65.0.2:50052"} for an RPC backend's failure

    def to_dict(self) -> dict:
        """status.last_error's shape: {"kind": code, "message": message}, plus the details
        (e.g. "backend": the RPC endpoint at fault)."""
        return {"kind": self.code, "message": self.message, **self.details}


@dataclass(frozen=True)
class Rule:
    """One line pattern (a case-insensitive regex) → failure kind, with the advice a user gets."""
    kind: str
    pattern: str
    advice: str
    engines: tuple[str, ...]
    example: str  # a real line this rule exists for (tests feed it back through classify)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(self.pattern, re.IGNORECASE))

    def search(self, line: str) -> bool:
        return self._regex.search(line) is not None  # type: ignore[attr-defined]

    def details(self, lines: list[str]) -> dict:
        """What the pattern's named groups caught in any of lines (e.g. {"backend": "host:port"});
        the first value of each wins."""
        found: dict = {}
        for line in lines:
            match = self._regex.search(line)  # type: ignore[attr-defined]
            for name, value in (match.groupdict() if match else {}).items():
                if value and name not in found:
                    found[name] = value
        return found


# Warnings an engine prints and survives; never a failure's cause.
IGNORED = (
    Rule("ignored", PINNED_MEMORY_WARNING,
         "harmless: the driver refused page-locked host memory and llama.cpp uses ordinary memory",
         BOTH, "ggml_cuda_host_malloc: failed to allocate 1900.00 MiB of pinned memory: invalid argument"),
)

RULES = (
    # An RPC backend's failure ends llama-server with SIGABRT whatever else it printed (RPC.md fact 7), so
    # these come first; the lines are ggml-rpc.cpp's GGML_ABORT texts (tests/remote_agent/rpc runs into them).
    Rule(RPC_VERSION, r"RPC server version mismatch: (?P<backend_protocol>\d+\.\d+\.\d+)|"
                      r"RPC handshake failed for (?P<backend>[^\s:]+:\d+)",
         "a backend speaks another RPC protocol than this llama-server, or did not finish the handshake: "
         + SAME_BUILD, ALL, "0.00.010.659 E RPC server version mismatch: 3.0.0"),
    Rule(BACKEND_UNREACHABLE, r"Failed to connect to (?P<backend>[^\s:]+:\d+)",
         "no ggml-rpc-server answers at that backend address: start the backend pod (APP_MODE=backend) or fix "
         "APP_RPC_BACKENDS; the agent resumes by itself once it answers",
         ALL, "/llama.cpp/ggml/src/ggml-rpc/ggml-rpc.cpp:547: Failed to connect to 127.0.0.1:54457"),
    Rule(BACKEND_LOST, r"Remote RPC server crashed or returned malformed response",
         "an RPC backend failed or went away mid-request (llama-server does not say which); the agent asks "
         "every backend and restarts llama-server when all of them answer",
         ALL, "/llama.cpp/ggml/src/ggml-rpc/ggml-rpc.cpp:566: Remote RPC server crashed or returned malformed response"),
    Rule(PORT_IN_USE, r"Failed to create server socket",
         "ggml-rpc-server could not listen: another process holds APP_PORT, or APP_BIND is not an address of "
         "this pod", ALL, "Failed to create server socket"),
    Rule(UNSUPPORTED, r"error: unknown argument|error: unknown device|No devices found",
         "the engine refused a flag or device in ARGS: check them (ggml-rpc-server takes -t, -d and -c; it "
         "dropped --mem/-m, and APP_MEM is the fit's budget now)", ALL, "error: unknown argument: --mem"),
    Rule(OOM, r"resource allocation failed|cublasCreate",
         "cuBLAS found no GPU memory left for its workspace: " + LOWER,
         BOTH, "CUDA error: the resource allocation failed"),
    Rule(OOM, r"cudaMalloc failed|CUDA error: out of memory",
         LOWER_MEMORY, BOTH,
         "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 8192.00 MiB on device 0: "
         "cudaMalloc failed: out of memory"),
    Rule(OOM, r"failed to allocate|insufficient memory|unable to allocate|out of memory|std::bad_alloc",
         LOWER_MEMORY, BOTH, "llama_new_context_with_model: failed to allocate compute buffers"),
    Rule(PORT_IN_USE, r"couldn't bind HTTP server socket|address already in use|Errno 98",
         "another process holds the engine port: stop it or set PORT", BOTH,
         "srv start: couldn't bind HTTP server socket, hostname: 127.0.0.1, port: 5002"),
    Rule(BAD_MODEL, r"unknown model architecture",
         "this engine build does not support the model's architecture: use a newer engine (a newer "
         "image) or a model of an architecture it knows; downloading again will not help",
         BOTH, "llama_model_load: error loading model: error loading model architecture: "
               "unknown model architecture: 'mllama'"),
    Rule(BAD_MODEL, r"Cannot find model file|model file .* not found",
         "the model file is missing: check MODEL / MODEL_DIR, or start a model that models.list shows",
         BOTH, "Cannot find model file: /models/x.gguf"),
    Rule(BAD_MODEL, r"invalid magic|failed to load model|error loading model|gguf_init_from_file|"
                    r"failed to read|data is not within the file bounds|Unknown Model|could not load text model",
         RELOAD, BOTH, "gguf_init_from_reader: invalid magic characters: '# po', expected 'GGUF'"),
)

# Lines that say most about a crash no rule explains, quoted instead of the last line.
_TELLING = re.compile(r"GGML_ASSERT|CUDA error|\berror\b|Error:|Traceback|terminate called|"
                      r"Segmentation fault|Aborted", re.IGNORECASE)


def classify(engine: str, returncode: int | None, log_lines: list[str]) -> EngineFailure:
    """The EngineFailure of engine's process from its exit status (None: never ran) and output
    lines: the first rule of RULES (for that engine) matching a line not IGNORED, else crashed.
    The message quotes the matching line (for crashed: the last telling line, else the last line)
    and the rule's advice; log_tail holds the last 20 lines."""
    kept = [line for line in log_lines if not any(r.search(line) for r in IGNORED)]
    for rule in RULES:
        if engine not in rule.engines:
            continue
        line = next((l for l in kept if rule.search(l)), None)
        if line is not None:
            return EngineFailure(rule.kind, f"{engine} {describe_exit(returncode)}: {line.strip()} — {rule.advice}",
                                 log_lines[-20:], rule.details(kept))
    telling = [l.strip() for l in kept if l.strip() and _TELLING.search(l)]
    last = telling[-1] if telling else next((l.strip() for l in reversed(kept) if l.strip()), "no output")
    return EngineFailure(CRASHED, f"{engine} {describe_exit(returncode)}; {'telling' if telling else 'last'} line: "
                         f"{last}", log_lines[-20:])


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


def rules_table() -> str:
    """The README's table (Markdown): line pattern → kind → advice, in the order rules are tried."""
    rows = ["| line pattern (case-insensitive regex) | kind | advice |", "|---|---|---|"]
    for rule in (*IGNORED, *RULES):
        pattern = rule.pattern.replace("|", "\\|")
        rows.append(f"| `{pattern}` | {rule.kind} | {rule.advice} |")
    rows.append("| anything else | crashed | the message quotes the last telling line "
                "(`GGML_ASSERT`, `CUDA error`, `error`, a traceback), else the last line |")
    return "\n".join(rows)
