"""The daemon's settings: its flags (contract B) and the image environment (MODEL, CTX, ENGINE, …,
and seed 003's APP_* cluster variables, read by engine/roles.py)."""

from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from remote_agent.engine.adapters import ADAPTERS
from remote_agent.engine.ctx import parse_ctx
from remote_agent.engine.adapters.base import EngineFailure
from remote_agent.engine.adapters.rpc_server import check_args as check_rpc_args
from remote_agent.engine.roles import BACKEND, SERVER, ClusterSettings, RoleError, cluster_from_env
from remote_agent.engine.supervisor import Timings
from remote_agent.engine_key import EngineKey, EngineKeyError, key_from_env
from remote_agent.paths import default_models_dir, default_socket_path, default_state_dir

DEFAULT_PORT = 5002


class SettingsError(Exception):
    """Bad flags or environment; the message names the variable and the fix."""


@dataclass
class AgentSettings:
    """Everything the daemon runs with (settings_from); sizes in bytes, times in seconds."""
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
    max_tokens: int | None = None  # MAX_TOKENS (seed 004): tokens per reply when a request names none
    # API_KEY / LLAMA_API_KEY (engine_key.py): the user's key or opt-out; None: the agent keeps its own
    user_api_key: EngineKey | None = None
    bin_dir: Path | None = None
    address_space_limit: int | None = None
    engine_stack_limit: int | None = None  # RLIMIT_STACK for the engine (the stand-in's thread stacks)
    memory_budget: int | None = None  # bytes the engine may use, instead of nvidia-smi's free memory
    engine_overhead: tuple[int, float] = (0, 0.0)  # bytes beyond llama.cpp's buffers: base, per token
    timings: Timings = field(default_factory=Timings)
    idle_poll_s: float = 15.0  # how often the activity clock behind status.idle_s polls the engine
    hf_token: str | None = field(default=None, repr=False)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)  # APP_MODE and the APP_* variables
    # An RPC server's checks (seconds): liveness every interval, stuck after deadline, a 1-token probe
    # at most every idle_probe while idle (0: never); backends' handshake deadline and poll while paused.
    liveness: tuple[float, float, float] = (5.0, 60.0, 60.0)
    backend_timeout_s: float = 5.0
    backend_poll_s: float = 2.0
    authorized_keys: Path = Path("~/.ssh/authorized_keys")  # a backend's: the cluster key goes here (links/)


def add_daemon_arguments(parser: argparse.ArgumentParser) -> None:
    """The `remote-agent daemon` flags; each names the environment variable it falls back to."""
    add = parser.add_argument
    add("--socket", help="Unix socket path (env REMOTE_AGENT_SOCKET; default /run/remote-agent/agent.sock as root)")
    add("--state-dir", help="where the last good engine config is kept (env REMOTE_AGENT_STATE_DIR)")
    add("--models-dir", help="where models are stored (env MODEL_DIR)")
    add("--engine-bin-dir", help="folder holding llama-server / koboldcpp (env REMOTE_AGENT_ENGINE_BIN_DIR; "
        "default: PATH)")
    add("--engine-address-space-limit", type=int, metavar="BYTES",
        help="RLIMIT_AS for the engine (env REMOTE_AGENT_ENGINE_ADDRESS_SPACE_LIMIT): the CPU stand-in for "
        "GPU memory in tests")
    add("--engine-stack-limit", type=int, metavar="BYTES",
        help="RLIMIT_STACK for the engine (env REMOTE_AGENT_ENGINE_STACK_LIMIT): with the address-space "
        "stand-in, small thread stacks keep virtual memory close to what a GPU would hold")
    add("--memory-budget", metavar="SIZE",
        help="memory the engine may use, for ctx auto (env REMOTE_AGENT_MEMORY_BUDGET; e.g. 20GiB; "
        "default: free GPU memory from nvidia-smi, else the address-space limit)")
    add("--engine-overhead", metavar="BYTES[+PER_TOKEN]",
        help="what the engine process needs beyond llama.cpp's buffers, for ctx auto (env "
        "REMOTE_AGENT_ENGINE_OVERHEAD; measured once for the CPU stand-in; on a GPU the margin covers it)")
    add("--no-autostart", action="store_true", help="do not start MODEL or the saved config at daemon start")
    tuning = parser.add_argument_group("supervision timings (seconds)")
    defaults = Timings()
    tuning.add_argument("--health-timeout", type=float, default=defaults.health_timeout,
                        help="how long a start may take to pass the health check (default: %(default)s)")
    tuning.add_argument("--stop-grace", type=float, default=defaults.stop_grace,
                        help="SIGTERM to SIGKILL of the engine's process group (default: %(default)s)")
    tuning.add_argument("--drain-timeout", type=float, default=defaults.drain_timeout,
                        help="how long a swap waits for requests in flight (default: %(default)s)")
    tuning.add_argument("--restart-backoff", type=float, default=defaults.restart_backoff,
                        help="first wait before restarting a crashed engine (default: %(default)s)")
    tuning.add_argument("--max-restarts", type=int, default=defaults.max_restarts,
                        help="failures in a row beyond which the engine is paused (default: %(default)s)")
    tuning.add_argument("--idle-poll", type=float, default=15.0,
                        help="how often the engine is asked whether it served requests (status idle_s; "
                        "default: %(default)s)")
    rpc = parser.add_argument_group("RPC cluster server (APP_MODE=server; seconds)")
    rpc.add_argument("--liveness-interval", type=float, default=5.0,
                     help="how often llama-server's progress is checked end to end (default: %(default)s)")
    rpc.add_argument("--liveness-deadline", type=float, default=60.0,
                     help="no progress on a request for this long means a backend froze: llama-server is "
                     "restarted (above the slowest prompt batch; default: %(default)s)")
    rpc.add_argument("--liveness-idle-probe", type=float, default=60.0,
                     help="while idle, a 1-token completion through every backend at most this often; 0: never "
                     "(off when IDLE_STOP_MINUTES is set, since a probe is a request; default: %(default)s)")
    rpc.add_argument("--backend-timeout", type=float, default=5.0,
                     help="deadline of the RPC handshake with each backend before a start (default: %(default)s)")
    rpc.add_argument("--authorized-keys", default="~/.ssh/authorized_keys",
                     help="a backend's authorized_keys, where cluster.authorize puts the cluster's link key")
    rpc.add_argument("--backend-poll", type=float, default=2.0,
                     help="how often a server paused for a backend asks it again (default: %(default)s)")


def _int_env(env: dict[str, str], name: str, minimum: int = 0, maximum: int | None = None) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer; set it to a number or leave it unset") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}={value} must be at most {maximum}")
    return value


def engine_env(env: dict[str, str]) -> dict:
    """The engine settings the seed-compatible environment gives (ENGINE, PORT, MODEL, CTX or
    CTX_SIZE, ARGS, GPU_LAYERS, PARALLEL, BATCH_SIZE, UBATCH_SIZE, MAX_TOKENS, API_KEY or
    LLAMA_API_KEY, and the cluster role: APP_MODE with seed 003's APP_* variables, which in server
    mode also give port, model and gpu_layers), checked: a bad value raises SettingsError naming it.
    `remote-agent boot` runs the same check, dry runs too."""
    engine = env.get("ENGINE", "").strip() or "llama-server"
    if engine not in ADAPTERS:
        raise SettingsError(f"ENGINE={engine!r} is not supported; use one of: {', '.join(ADAPTERS)}")
    try:
        extra_args = tuple(shlex.split(env.get("ARGS", "")))
    except ValueError as exc:
        raise SettingsError(f"ARGS cannot be split like a shell line ({exc}); check its quotes") from None
    # CTX_SIZE is seed 004's name for CTX; CTX wins when both are set
    ctx_name = "CTX" if env.get("CTX", "").strip() else "CTX_SIZE"
    env_ctx = env.get(ctx_name, "").strip() or None
    try:
        parse_ctx(env_ctx)
    except ValueError:
        raise SettingsError(f"{ctx_name}={env_ctx!r} is neither a number of tokens nor 'auto'; "
                            f"set e.g. {ctx_name}=8192 or {ctx_name}=auto, or unset it") from None
    try:
        user_api_key = key_from_env(env)
    except EngineKeyError as exc:
        raise SettingsError(str(exc)) from None
    try:
        cluster = cluster_from_env(env)
    except RoleError as exc:
        raise SettingsError(str(exc)) from None
    server = cluster.role == SERVER
    if cluster.role == BACKEND:
        try:
            check_rpc_args(extra_args)
        except EngineFailure as exc:
            raise SettingsError(exc.message) from None
    if server and engine != "llama-server":
        raise SettingsError(f"APP_MODE=server runs llama-server, the RPC client; ENGINE={engine} cannot be one. "
                            "Unset ENGINE")
    if server and any(arg == "--rpc" or arg.startswith("--rpc=") for arg in extra_args):
        raise SettingsError("ARGS sets --rpc, which the agent sets from APP_RPC_BACKENDS; remove it from ARGS")
    return dict(
        port=(cluster.port if server else None) or _int_env(env, "PORT", 1, 65535) or DEFAULT_PORT,
        engine=engine,
        model=cluster.model if server else env.get("MODEL", "").strip() or None,
        env_ctx=env_ctx,
        args=extra_args,
        gpu_layers=cluster.gpu_layers if server else _int_env(env, "GPU_LAYERS"),
        parallel=_int_env(env, "PARALLEL", 1),
        batch_size=_int_env(env, "BATCH_SIZE", 1),
        ubatch_size=_int_env(env, "UBATCH_SIZE", 1),
        max_tokens=_int_env(env, "MAX_TOKENS", 1),
        user_api_key=user_api_key,
        cluster=cluster,
    )


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30,
          "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40}


def parse_size(text: str, name: str) -> int:
    """"20GiB", "512M", "1073741824" → bytes (binary units); SettingsError naming `name` otherwise."""
    raw = text.strip().lower().replace(" ", "")
    number = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(number):]
    try:
        value = int(float(number) * _UNITS[unit])
    except (ValueError, KeyError):
        raise SettingsError(f"{name}={text!r} is not a size; write bytes or e.g. 20GiB, 512MiB") from None
    if value <= 0:
        raise SettingsError(f"{name}={text!r} must be positive")
    return value


def parse_overhead(text: str, name: str) -> tuple[int, float]:
    """"BYTES" or "BYTES+PER_TOKEN" → (base bytes, bytes per token of context)."""
    base, _, per_token = text.strip().partition("+")
    try:
        # a measured base may be zero or negative (the line's intercept); sizes with units are positive
        base_bytes = int(base) if base.strip().lstrip("-").isdigit() else parse_size(base, name)
        return base_bytes, float(per_token) if per_token else 0.0
    except ValueError:
        raise SettingsError(f"{name}={text!r}: write BYTES or BYTES+BYTES_PER_TOKEN, e.g. 66MiB+52") from None


def settings_from(args: argparse.Namespace, env: dict[str, str] | None = None) -> AgentSettings:
    """AgentSettings from parsed flags and env (default os.environ); a flag wins over its variable.
    Raises SettingsError naming the bad flag or variable."""
    env = dict(os.environ if env is None else env)
    limit = args.engine_address_space_limit
    if limit is None and env.get("REMOTE_AGENT_ENGINE_ADDRESS_SPACE_LIMIT"):
        limit = _int_env(env, "REMOTE_AGENT_ENGINE_ADDRESS_SPACE_LIMIT", 1)
    bin_dir = args.engine_bin_dir or env.get("REMOTE_AGENT_ENGINE_BIN_DIR") or None
    stack = args.engine_stack_limit
    if stack is None and env.get("REMOTE_AGENT_ENGINE_STACK_LIMIT"):
        stack = _int_env(env, "REMOTE_AGENT_ENGINE_STACK_LIMIT", 1)
    budget_text = args.memory_budget or env.get("REMOTE_AGENT_MEMORY_BUDGET", "").strip()
    overhead_text = args.engine_overhead or env.get("REMOTE_AGENT_ENGINE_OVERHEAD", "").strip()
    return AgentSettings(
        socket=Path(args.socket) if args.socket else default_socket_path(env),
        state_dir=Path(args.state_dir) if args.state_dir else default_state_dir(env),
        models_dir=Path(args.models_dir) if args.models_dir else default_models_dir(env),
        **engine_env(env),
        bin_dir=Path(bin_dir) if bin_dir else None,
        address_space_limit=limit,
        engine_stack_limit=stack,
        memory_budget=parse_size(budget_text, "--memory-budget") if budget_text else None,
        engine_overhead=parse_overhead(overhead_text, "--engine-overhead") if overhead_text else (0, 0.0),
        timings=Timings(health_timeout=args.health_timeout, stop_grace=args.stop_grace,
                        drain_timeout=args.drain_timeout, restart_backoff=args.restart_backoff,
                        max_restarts=args.max_restarts),
        idle_poll_s=args.idle_poll,
        hf_token=env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None,
        # A liveness probe is a request: it would keep IDLE_STOP_MINUTES from ever stopping the pod.
        liveness=(args.liveness_interval, args.liveness_deadline,
                  0.0 if env.get("IDLE_STOP_MINUTES", "").strip() else args.liveness_idle_probe),
        backend_timeout_s=args.backend_timeout,
        backend_poll_s=args.backend_poll,
        authorized_keys=Path(args.authorized_keys).expanduser(),
    )
