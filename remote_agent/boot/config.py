"""Everything `remote-agent boot` reads: flags, the image environment, and paths under a root.

Every path is configurable so the tests can boot a real sshd and daemon in a temporary root:
`--root DIR` moves all default paths under DIR, and each path also has its own flag / env var.

MODE_TO_RUN (seed 001) picks what the container is: `pod` (the default: everything below, exactly as
before the mode existed) or `serverless` (a Runpod Serverless worker: boot/serverless.py). In
serverless mode the volume is the endpoint's network volume at BASE_PATH (default /runpod-volume,
seed 002), models go to BASE_PATH/models unless MODEL_DIR says otherwise, and the agent's state
stays on the worker's own disk: the network volume is shared by every worker of the endpoint at
once, and each worker's engine record and key are its own. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from remote_agent.child_env import secret_values  # values never printed, in any form
from remote_agent.serverless.config import (
    Concurrency, ServerlessConfigError, concurrency_from, request_timeout_from)

DEFAULT_ENGINE_PORT = 5002
DEFAULT_VOLUME = "workspace"  # Runpod mounts the volume at /workspace unless the template says otherwise
DEFAULT_BASE_PATH = "runpod-volume"  # where Runpod mounts an endpoint's network volume (SERVERLESS.md §4.3)
MODES = ("pod", "serverless")
FALSE_WORDS = {"", "0", "false", "no", "off"}


class BootConfigError(Exception):
    """Bad input in the environment or flags; the message names the variable and the fix."""


def truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in FALSE_WORDS


@dataclass
class BootConfig:
    root: Path
    dry_run: bool
    dry_run_from_env: bool
    exit_on_error: bool
    volume_dir: Path
    host_key_dir: Path
    sshd_config: Path
    authorized_keys: Path
    sshd_bin: str
    ssh_keygen: str
    sshd_port: int
    sshd_listen: str | None
    sshd_options: list[str]
    run_dir: Path
    privsep_dir: Path
    models_dir: Path
    state_dir: Path
    socket: Path
    daemon_command: list[str]
    engine: str
    engine_port: int
    pod_id: str
    on_runpod: bool
    public_ip: str | None
    public_ssh_port: str | None
    public_key: str
    idle_stop_minutes: float | None
    idle_unit_s: float
    runpod_api_url: str
    runpod_api_key: str | None = field(repr=False)
    env: dict[str, str] = field(repr=False)
    mode: str = "pod"  # MODE_TO_RUN
    concurrency: Concurrency | None = None  # serverless: jobs at once (MAX_CONCURRENCY / CONCURRENCY_MODIFIER)
    engine_http: bool = True  # False in APP_MODE backend / none: nothing answers HTTP on engine_port
    role_note: str = ""  # the RPC cluster role APP_MODE chose (APP_MODE=rank: by NODE_RANK), for the dry run

    @property
    def serverless(self) -> bool:
        return self.mode == "serverless"

    @property
    def secrets(self) -> list[str]:
        """Values never printed: the pod's secrets, and in serverless mode the worker's job-queue key."""
        worker_key = self.env.get("RUNPOD_AI_API_KEY", "").strip() if self.serverless else ""
        return [*secret_values(self.env), *([worker_key] if worker_key else [])]


def add_boot_arguments(parser: argparse.ArgumentParser) -> None:
    """The `boot` sub-command's flags (cli.py calls this; defaults come from the environment)."""
    add = parser.add_argument
    add("--dry-run", action="store_true", help="print every step, change nothing (env DRYRUN)")
    add("--exit-on-error", action="store_true",
        help="exit 1 on an unrecoverable error instead of staying up for SSH debugging "
        "(env REMOTE_AGENT_BOOT_EXIT_ON_ERROR)")
    add("--root", help="prefix for every default path (tests); default /")
    add("--host-key-dir", help="where host keys live, on the volume (env REMOTE_AGENT_HOST_KEY_DIR)")
    add("--sshd-config", help="sshd_config to run with (default /etc/ssh/sshd_config)")
    add("--authorized-keys", help="authorized_keys for PUBLIC_KEY (default /root/.ssh/authorized_keys)")
    add("--sshd", dest="sshd_bin", help="sshd binary (default /usr/sbin/sshd)")
    add("--sshd-port", type=int, help="port sshd listens on (env REMOTE_AGENT_SSHD_PORT, default 22)")
    add("--sshd-listen", help="ListenAddress override (tests: 127.0.0.1)")
    add("--sshd-option", action="append", default=[], metavar="KEY=VALUE",
        help="extra `sshd -o` option (repeatable)")
    add("--models-dir", help="models directory (env MODEL_DIR, default <volume>/models)")
    add("--state-dir", help="agent state directory (default <volume>/.podtui/agent)")
    add("--socket", help="agent socket (env REMOTE_AGENT_SOCKET)")
    add("--daemon-command", help="command that starts the daemon (default: this Python's "
        "`-m remote_agent daemon`); --socket/--state-dir/--models-dir are appended")
    add("--idle-unit-seconds", type=float,
        help="seconds in one IDLE_STOP_MINUTES unit (tests shrink it; default 60)")
    add("--runpod-api-url", help="Runpod REST base URL (env RUNPOD_API_URL, default https://api.runpod.io)")


def _int_env(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BootConfigError(f"{name}={raw!r} is not a whole number; set it to a port such as "
                              f"{default}, or unset it") from None
    if not 0 < value < 65536:
        raise BootConfigError(f"{name}={value} is outside 1-65535; pick a free TCP port")
    return value


def _idle_minutes(env: dict[str, str]) -> float | None:
    raw = env.get("IDLE_STOP_MINUTES", "").strip()
    if not raw or raw == "0":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BootConfigError(f"IDLE_STOP_MINUTES={raw!r} is not a number; set minutes such as 30, "
                              "or unset it to never stop the pod automatically") from None
    if value <= 0:
        raise BootConfigError(f"IDLE_STOP_MINUTES={raw} must be positive (or unset)")
    return value


def mode_from(env: dict[str, str]) -> str:
    """MODE_TO_RUN: "pod" (also when unset) or "serverless", any case. Raises BootConfigError."""
    raw = env.get("MODE_TO_RUN", "").strip()
    mode = raw.lower() or "pod"
    if mode not in MODES:
        raise BootConfigError(f"MODE_TO_RUN={raw!r} is not a mode; set pod (SSH and a tunnel, the default) or "
                              "serverless (a Runpod Serverless worker)")
    return mode


def _serverless(env: dict[str, str]) -> Concurrency:
    if not env.get("MODEL", "").strip():
        raise BootConfigError("MODE_TO_RUN=serverless needs MODEL: a serverless worker serves the one model it "
                              "loads at start; set MODEL in the endpoint's environment (e.g. org/repo:Q4_K_M, or "
                              "a .gguf path on the network volume)")
    try:
        return concurrency_from(env)
    except ServerlessConfigError as exc:
        raise BootConfigError(str(exc)) from None


def config_from(args: argparse.Namespace, env: dict[str, str] | None = None) -> BootConfig:
    env = dict(os.environ if env is None else env)
    root = Path(args.root or env.get("REMOTE_AGENT_ROOT") or "/")
    mode = mode_from(env)
    concurrency = _serverless(env) if mode == "serverless" else None

    def path(flag: str | None, env_name: str | None, default: Path) -> Path:
        value = flag or (env.get(env_name) if env_name else None)
        return Path(value) if value else default

    run_dir = root / "run" / "remote-agent"
    if mode == "serverless":  # the network volume, shared by the endpoint's workers; state stays local
        volume = path(None, "BASE_PATH", root / DEFAULT_BASE_PATH)
        state_default = run_dir / "state"
    else:
        volume = path(None, "REMOTE_AGENT_VOLUME", root / DEFAULT_VOLUME)
        state_default = volume / ".podtui" / "agent"
    daemon_command = (shlex.split(args.daemon_command) if args.daemon_command
                      else [sys.executable, "-m", "remote_agent", "daemon"])
    pod_id = env.get("RUNPOD_POD_ID", "").strip()
    idle_unit = args.idle_unit_seconds or float(env.get("REMOTE_AGENT_IDLE_UNIT_SECONDS") or 60)
    config = BootConfig(
        root=root,
        dry_run=bool(args.dry_run) or truthy(env.get("DRYRUN")),
        dry_run_from_env=not args.dry_run and truthy(env.get("DRYRUN")),
        exit_on_error=bool(args.exit_on_error) or truthy(env.get("REMOTE_AGENT_BOOT_EXIT_ON_ERROR")),
        volume_dir=volume,
        host_key_dir=path(args.host_key_dir, "REMOTE_AGENT_HOST_KEY_DIR", volume / ".podtui" / "ssh"),
        sshd_config=path(args.sshd_config, None, root / "etc" / "ssh" / "sshd_config"),
        authorized_keys=path(args.authorized_keys, None, root / "root" / ".ssh" / "authorized_keys"),
        sshd_bin=args.sshd_bin or "/usr/sbin/sshd",
        ssh_keygen=env.get("REMOTE_AGENT_SSH_KEYGEN", "ssh-keygen"),
        sshd_port=args.sshd_port or _int_env(env, "REMOTE_AGENT_SSHD_PORT", 22),
        sshd_listen=args.sshd_listen,
        sshd_options=list(args.sshd_option or []),
        run_dir=run_dir,
        privsep_dir=Path("/run/sshd"),  # compiled into Debian's sshd; not movable
        models_dir=path(args.models_dir, "MODEL_DIR", volume / "models"),
        state_dir=path(args.state_dir, None, state_default),
        socket=path(args.socket, "REMOTE_AGENT_SOCKET", run_dir / "agent.sock"),
        daemon_command=daemon_command,
        engine=env.get("ENGINE", "").strip() or "llama-server",
        engine_port=_int_env(env, "PORT", DEFAULT_ENGINE_PORT),
        pod_id=pod_id or socket.gethostname(),
        on_runpod=bool(pod_id),
        public_ip=env.get("RUNPOD_PUBLIC_IP", "").strip() or None,
        public_ssh_port=env.get("RUNPOD_TCP_PORT_22", "").strip() or None,
        public_key=env.get("PUBLIC_KEY", ""),
        idle_stop_minutes=_idle_minutes(env),
        idle_unit_s=idle_unit,
        runpod_api_url=(args.runpod_api_url or env.get("RUNPOD_API_URL") or "https://api.runpod.io"),
        runpod_api_key=env.get("RUNPOD_API_KEY") or None,
        env=env,
        mode=mode,
        concurrency=concurrency,
    )
    # The daemon refuses a bad ENGINE, CTX, ARGS, PARALLEL …: say so now, dry runs included,
    # instead of after sshd is up and the daemon has exited.
    from remote_agent.engine.roles import BACKEND, NONE, describe_role
    from remote_agent.server.settings import SettingsError, engine_env

    try:
        settings = engine_env(env)
        if mode == "serverless":
            request_timeout_from(env)
    except (SettingsError, ServerlessConfigError) as exc:
        raise BootConfigError(str(exc)) from None
    # The engine port as the daemon computes it (APP_MODE=server: PORT, else APP_PORT); no HTTP engine in the
    # backend and none roles (HTTP sent to ggml-rpc-server, which serves one client, can kill it).
    config.engine_port = settings["port"]
    config.engine_http = settings["cluster"].role not in (BACKEND, NONE)
    config.role_note = describe_role(settings["cluster"])
    return config
