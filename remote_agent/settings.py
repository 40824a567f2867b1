"""The daemon's settings: its flags (contract B) and the image environment (MODEL, CTX, ENGINE, …)."""

from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from remote_agent.engines import ADAPTERS
from remote_agent.paths import default_models_dir, default_socket_path, default_state_dir
from remote_agent.supervisor import Timings

DEFAULT_PORT = 5002


class SettingsError(Exception):
    """Bad flags or environment; the message names the variable and the fix."""


@dataclass
class AgentSettings:
    socket: Path
    state_dir: Path
    models_dir: Path
    port: int = DEFAULT_PORT
    engine: str = "llama-server"
    model: str | None = None  # MODEL: started at boot when no saved config says otherwise
    env_ctx: str | None = None
    args: tuple[str, ...] = ()
    gpu_layers: int | None = None
    parallel: int | None = None
    batch_size: int | None = None
    ubatch_size: int | None = None
    bin_dir: Path | None = None
    address_space_limit: int | None = None
    timings: Timings = field(default_factory=Timings)
    hf_token: str | None = field(default=None, repr=False)


def add_daemon_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--socket", help="Unix socket path (env REMOTE_AGENT_SOCKET; default /run/remote-agent/agent.sock as root)")
    add("--state-dir", help="where the last good engine config is kept (env REMOTE_AGENT_STATE_DIR)")
    add("--models-dir", help="where models are stored (env MODEL_DIR)")
    add("--engine-bin-dir", help="folder holding llama-server / koboldcpp (env REMOTE_AGENT_ENGINE_BIN_DIR; "
        "default: PATH)")
    add("--engine-address-space-limit", type=int, metavar="BYTES",
        help="RLIMIT_AS for the engine (env REMOTE_AGENT_ENGINE_ADDRESS_SPACE_LIMIT): the CPU stand-in for "
        "GPU memory in tests")
    add("--no-autostart", action="store_true", help="do not start MODEL or the saved config at daemon start")
    tuning = parser.add_argument_group("supervision timings (seconds)")
    defaults = Timings()
    tuning.add_argument("--health-timeout", type=float, default=defaults.health_timeout)
    tuning.add_argument("--stop-grace", type=float, default=defaults.stop_grace)
    tuning.add_argument("--drain-timeout", type=float, default=defaults.drain_timeout)
    tuning.add_argument("--restart-backoff", type=float, default=defaults.restart_backoff)
    tuning.add_argument("--max-restarts", type=int, default=defaults.max_restarts)


def _int_env(env: dict[str, str], name: str, minimum: int = 0) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer; set it to a number or leave it unset") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def settings_from(args: argparse.Namespace, env: dict[str, str] | None = None) -> AgentSettings:
    env = dict(os.environ if env is None else env)
    engine = env.get("ENGINE", "").strip() or "llama-server"
    if engine not in ADAPTERS:
        raise SettingsError(f"ENGINE={engine!r} is not supported; use one of: {', '.join(ADAPTERS)}")
    try:
        extra_args = tuple(shlex.split(env.get("ARGS", "")))
    except ValueError as exc:
        raise SettingsError(f"ARGS cannot be split like a shell line ({exc}); check its quotes") from None
    limit = args.engine_address_space_limit
    if limit is None and env.get("REMOTE_AGENT_ENGINE_ADDRESS_SPACE_LIMIT"):
        limit = _int_env(env, "REMOTE_AGENT_ENGINE_ADDRESS_SPACE_LIMIT", 1)
    bin_dir = args.engine_bin_dir or env.get("REMOTE_AGENT_ENGINE_BIN_DIR") or None
    return AgentSettings(
        socket=Path(args.socket) if args.socket else default_socket_path(env),
        state_dir=Path(args.state_dir) if args.state_dir else default_state_dir(env),
        models_dir=Path(args.models_dir) if args.models_dir else default_models_dir(env),
        port=_int_env(env, "PORT", 1) or DEFAULT_PORT,
        engine=engine,
        model=env.get("MODEL", "").strip() or None,
        env_ctx=env.get("CTX", "").strip() or None,
        args=extra_args,
        gpu_layers=_int_env(env, "GPU_LAYERS"),
        parallel=_int_env(env, "PARALLEL", 1),
        batch_size=_int_env(env, "BATCH_SIZE", 1),
        ubatch_size=_int_env(env, "UBATCH_SIZE", 1),
        bin_dir=Path(bin_dir) if bin_dir else None,
        address_space_limit=limit,
        timings=Timings(health_timeout=args.health_timeout, stop_grace=args.stop_grace,
                        drain_timeout=args.drain_timeout, restart_backoff=args.restart_backoff,
                        max_restarts=args.max_restarts),
        hf_token=env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None,
    )
