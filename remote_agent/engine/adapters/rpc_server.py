"""llama.cpp's ggml-rpc-server: an RPC cluster's backend (seed 003 APP_MODE=backend).

It lends this pod's device to a llama-server elsewhere. What the adapter does and why (RPC.md §0, §1):
- Ready means its port is in LISTEN state (/proc/net/tcp). It is never probed by connecting: it
  serves one client at a time, a second connection hangs, and a client that leaves early can kill
  it. Its exit status means nothing (0 on unknown flags and on a busy port), so a failure is read
  from its output (classify.py's ggml-rpc-server rules).
- It starts with SIGPIPE ignored (`ignores_sigpipe`; the process module passes
  restore_signals=False, so the agent's own ignored SIGPIPE is inherited).
- It runs under `stdbuf -oL` when stdbuf is installed (coreutils): its banner goes to stdout with
  printf and is block-buffered into a pipe, so nothing would reach the log for a long time. Without
  stdbuf it still runs, and status then shows no devices until the buffer flushes.
- `-c` is always on, with LLAMA_CACHE under the agent's state dir (EngineConfig.env): tensors over
  10 MiB are kept on disk and a restart re-sends far less (54.0 → 21.2 MB measured).
- It has no API key, no HTTP and no context. Of ARGS it takes -t/--threads and -d/--device;
  -H/-p come from APP_BIND/APP_PORT, and -m/--mem no longer exist (APP_MEM is the fit's budget).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from remote_agent.engine.adapters.base import (
    LISTENING, UNSUPPORTED, EngineAdapter, EngineConfig, EngineFailure, flag_value)
from remote_agent.engine.rpc_build import parse_banner
from remote_agent.engine_key import KEYLESS, EngineKey

NAME = "ggml-rpc-server"
CACHE_ENV = "LLAMA_CACHE"  # the -c cache lives in $LLAMA_CACHE/rpc (tools/rpc/rpc-server.cpp)
_SET_BY_AGENT = {("-H", "--host"): "APP_BIND", ("-p", "--port"): "APP_PORT"}
_REMOVED = ("-m", "--mem")
log = logging.getLogger("remote_agent.engine")


def cache_env(state_dir: Path) -> tuple[tuple[str, str], ...]:
    """The engine environment that puts the tensor cache under state_dir (state_dir/rpc-cache/rpc)."""
    return ((CACHE_ENV, str(Path(state_dir) / "rpc-cache")),)


class RpcServerAdapter(EngineAdapter):
    """ggml-rpc-server: ready when its port listens and its banner is out; no key, no HTTP API."""
    name = NAME
    binary = NAME
    readiness = LISTENING
    ignores_sigpipe = True
    takes_key = False
    health_path = ""

    def command(self, config: EngineConfig, bin_dir: Path | None, api_key: str | None = None) -> list[str]:
        """[stdbuf -oL] ggml-rpc-server -H bind -p port -c, then ARGS (checked by check())."""
        stdbuf = shutil.which("stdbuf")
        if stdbuf is None:
            log.warning("stdbuf is not installed: ggml-rpc-server's output (its devices) reaches the log late")
        prefix = [stdbuf, "-oL"] if stdbuf else []
        return [*prefix, self.binary_path(bin_dir), "-H", config.host, "-p", str(config.port), "-c", *config.args]

    def check(self, config: EngineConfig, bin_dir: Path | None) -> None:
        """Refuse ARGS this server cannot take (check_args), or a missing binary (missing_binary)."""
        check_args(config.args)
        self.binary_path(bin_dir)

    def engine_key(self, args, agent_key: EngineKey) -> EngineKey:
        """None: the RPC protocol has no authentication at all (RPC.md §1.3)."""
        return KEYLESS

    def launch_key(self, args, agent_key: EngineKey) -> str | None:
        """No key is handed over."""
        return None

    def started(self, lines: list[str]) -> bool:
        """Whether the banner (protocol version and devices) has been read."""
        return parse_banner(lines).complete

    def describe(self, lines: list[str]) -> dict | None:
        """{"protocol": "7.0.0", "devices": [{"name", "description", "total_mib", "free_mib"}]} from its
        banner (free memory as at its start)."""
        return parse_banner(lines).to_dict()


def check_args(args: tuple[str, ...] | list[str]) -> None:
    """Refuse ARGS that set what the agent sets (-H, -p) or that ggml-rpc-server no longer has (-m,
    --mem): EngineFailure unsupported, naming the variable to use instead."""
    for flags, variable in _SET_BY_AGENT.items():
        if flag_value(args, flags) is not None:
            raise EngineFailure(UNSUPPORTED, f"ARGS sets {flags[0]}/{flags[1]}, which the agent sets from "
                                f"{variable}; remove it from ARGS and set {variable}")
    if any(arg in _REMOVED or arg.startswith("--mem=") for arg in args):
        raise EngineFailure(UNSUPPORTED, "ARGS passes -m/--mem, which ggml-rpc-server no longer has (it would "
                            "print 'unknown argument' and exit 0); remove it: APP_MEM is this backend's memory "
                            "budget for the fit now")
