"""The steps of `remote-agent boot`, each of which prints what it does (or would do, dry).

Host keys live on the volume so their fingerprints survive stop/resume; the private keys never
leave the pod. Nothing here prints a secret: the Reporter masks HF_TOKEN / RUNPOD_API_KEY /
API_KEY values and the engine's key should one ever reach a line, and ARGS is shown with its key
flags' values masked. Standard library only.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from remote_agent import engine_key
from remote_agent.boot.config import BootConfig
from remote_agent.child_env import SECRET_ENV, without_secrets
from remote_agent.engine.adapters import ADAPTERS
from remote_agent.engine.adapters.base import masked_flags
from remote_agent.engine.roles import BACKEND, RoleError, cluster_from_env
from remote_agent.engine_key import EngineKey
from remote_agent.hostkey_block import (
    HostPublicKey,
    format_block,
)
from remote_agent.links.command import (
    BACKEND_CLIENT_ALIVE_COUNT,
    BACKEND_CLIENT_ALIVE_INTERVAL_S,
)

# (ssh-keygen -t, file name, extra ssh-keygen args); Ed25519 first, as contract A orders the block.
HOST_KEY_KINDS = (
    ("ed25519", "ssh_host_ed25519_key", ()),
    ("ecdsa", "ssh_host_ecdsa_key", ("-b", "256")),
)
LOCAL_TUNNEL_PORT = 5002


class BootError(Exception):
    """An unrecoverable boot failure: what went wrong and what to do about it."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


class Reporter:
    """Prints boot's lines to stdout, flushed (the pod log), with every secret value masked."""

    def __init__(self, secrets: list[str], stream=None) -> None:
        self.secrets = [s for s in secrets if s]
        self.stream = stream or sys.stdout

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "<hidden>")
        return text

    def raw(self, line: str) -> None:
        self.stream.write(self._mask(line) + "\n")
        self.stream.flush()

    def step(self, message: str) -> None:
        self.raw(f"[boot] {message}")

    def would(self, message: str) -> None:
        self.raw(f"[boot] dry run, would {message}")

    def warn(self, message: str) -> None:
        self.raw(f"[boot] WARNING: {message}")


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              check=False, env=without_secrets(), **kwargs)
    except FileNotFoundError:
        raise BootError(f"{cmd[0]} is not installed or not on PATH",
                        "install openssh (openssh-client/openssh-server) in the image") from None


# --- sshd -------------------------------------------------------------------------------------------


def sshd_command(cfg: BootConfig, *, test_only: bool = False) -> list[str]:
    """sshd in the foreground (boot owns its PID), logging to stderr (the pod log)."""
    cmd = [cfg.sshd_bin, "-t" if test_only else "-D", "-f", str(cfg.sshd_config)]
    if not test_only:
        cmd.append("-e")
    for _kind, name, _extra in HOST_KEY_KINDS:
        cmd += ["-h", str(cfg.host_key_dir / name)]
    # -p (not -o Port) because sshd ignores the config file's Port only for -p.
    cmd += ["-p", str(cfg.sshd_port),
            "-o", f"AuthorizedKeysFile={cfg.authorized_keys}",
            "-o", f"PidFile={cfg.run_dir / 'sshd.pid'}"]
    if cfg.sshd_listen:
        cmd += ["-o", f"ListenAddress={cfg.sshd_listen}"]
    for option in [*cfg.sshd_options, *role_sshd_options(cfg)]:  # sshd keeps the first value: --sshd-option wins
        cmd += ["-o", option]
    return cmd


def role_sshd_options(cfg: BootConfig) -> list[str]:
    """sshd options the pod's RPC cluster role adds (`NAME=VALUE` strings for `-o`); [] in other roles.

    A backend (the role engine/roles.py decides) runs sshd with ClientAliveInterval=1 and
    ClientAliveCountMax=3 (links/command.py), instead of image/sshd_config's 30 s × 4: ggml-rpc-server
    serves one client at a time (RPC.md fact 4) and sshd keeps its forwarded connection to it open while
    the session lives, so a link whose server pod froze held the backend for minutes; now sshd drops it in
    7-8 s (measured, OpenSSH 9.2; the numbers are in links/command.py). OpenSSH has no per-key
    ClientAlive (authorized_keys options and `Match` cannot select by key), so it is the whole sshd: any
    session to a backend pod, podtui's own included, ends after ~8 s without an answer (a live client's
    keepalive replies keep it up). The environment was checked by config_from; a bad one adds nothing."""
    try:
        role = cluster_from_env(cfg.env).role
    except RoleError:
        return []
    if role != BACKEND:
        return []
    return [f"ClientAliveInterval={BACKEND_CLIENT_ALIVE_INTERVAL_S}",
            f"ClientAliveCountMax={BACKEND_CLIENT_ALIVE_COUNT}"]


def start_sshd(cfg: BootConfig, rep: Reporter) -> subprocess.Popen | None:
    if cfg.dry_run:
        rep.would(f"check the sshd configuration: {shlex.join(sshd_command(cfg, test_only=True))}")
        rep.would(f"start sshd: {shlex.join(sshd_command(cfg))}")
        return None
    if not Path(cfg.sshd_bin).exists():
        raise BootError(f"sshd is not at {cfg.sshd_bin}",
                        "install openssh-server in the image (or pass --sshd PATH)")
    if not cfg.sshd_config.exists():
        raise BootError(f"the sshd configuration {cfg.sshd_config} is missing",
                        "copy image/sshd_config there (the Dockerfile does) or pass --sshd-config")
    for folder in (cfg.run_dir, cfg.privsep_dir):
        folder.mkdir(parents=True, exist_ok=True)
    check = _run(sshd_command(cfg, test_only=True))
    if check.returncode != 0:
        raise BootError(f"sshd refuses its configuration: {check.stderr.strip()}",
                        f"fix {cfg.sshd_config} (compare with image/sshd_config)")
    rep.step(f"starting sshd on port {cfg.sshd_port}: {shlex.join(sshd_command(cfg))}")
    return subprocess.Popen(sshd_command(cfg), start_new_session=True, env=without_secrets())


# --- what to print -----------------------------------------------------------------------------------


def print_connect_info(cfg: BootConfig, rep: Reporter, keys: list[HostPublicKey]) -> None:
    if keys:
        rep.step("host keys (compare these fingerprints before trusting any connection):")
        # one write, so sshd's stderr (the same pod log) cannot land between the block's lines
        rep.raw("\n".join(format_block(cfg.pod_id, keys)))
    else:
        rep.step("host keys: none yet (a real boot generates and prints them)")
    ip = cfg.public_ip or "<RUNPOD_PUBLIC_IP>"
    port = cfg.public_ssh_port or "<RUNPOD_TCP_PORT_22>"
    if not (cfg.public_ip and cfg.public_ssh_port):
        rep.warn("RUNPOD_PUBLIC_IP / RUNPOD_TCP_PORT_22 are not set: expose 22/tcp in the pod's "
                 "ports (the template does) and pick a GPU with a public IP; the placeholders "
                 "below stand for the public address and the port mapped to 22")
    rep.step(f"connect with podtui (verifies the key above):  podtui tunnel {cfg.pod_id}")
    rep.step("or with OpenSSH (compare the fingerprint ssh shows with the block above):  "
             f"ssh -N -L {LOCAL_TUNNEL_PORT}:127.0.0.1:{cfg.engine_port} root@{ip} -p {port}")
    rep.step(f"then the API is at http://127.0.0.1:{LOCAL_TUNNEL_PORT}/v1 on your machine")


# --- the engine's API key ----------------------------------------------------------------------------


def prepare_engine_key(cfg: BootConfig, rep: Reporter) -> EngineKey | None:
    """The key the engine (MODEL with ARGS) will require, generated into the state dir when the user
    gave none, so the daemon finds the same one; the opt-out is a warning. Never prints the key.
    None in a dry run that would generate one."""
    user = engine_key.key_from_env(cfg.env)  # checked by config_from already
    path = engine_key.key_file(cfg.state_dir)
    if user is None and cfg.dry_run:
        stored = engine_key.read_stored(cfg.state_dir)
        if stored is None:
            rep.would(f"generate the engine's API key into {path} (mode 0600; kept for every later boot)")
            return None
        key = EngineKey(stored, engine_key.GENERATED)
    else:
        key = engine_key.resolve(user, cfg.state_dir)
    adapter = ADAPTERS.get(cfg.engine)
    args = _engine_args(cfg)
    if adapter is not None:
        key = adapter().engine_key(args, key)
    if key.value:
        rep.secrets.append(key.value)
    if key.warning:
        rep.warn(key.warning)
    elif key.source == engine_key.GENERATED:
        rep.step(f"the engine requires an API key, kept in {path}: podtui shows it beside the base URL "
                 "(set API_KEY to choose your own, API_KEY=none for none)")
    else:
        rep.step(f"the engine requires the API key from {key.source}")
    return key


def _engine_args(cfg: BootConfig) -> list[str]:
    try:
        return shlex.split(cfg.env.get("ARGS", ""))
    except ValueError:
        return []


# --- the daemon --------------------------------------------------------------------------------------


def daemon_command(cfg: BootConfig) -> list[str]:
    return [*cfg.daemon_command, "--socket", str(cfg.socket), "--state-dir", str(cfg.state_dir),
            "--models-dir", str(cfg.models_dir)]


def daemon_environment(cfg: BootConfig) -> dict[str, str]:
    # The daemon needs HF_TOKEN for gated downloads but never the pod's Runpod API key.
    env = {k: v for k, v in cfg.env.items() if k != "RUNPOD_API_KEY"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def describe_engine_env(cfg: BootConfig) -> str:
    names = ("MODEL", "CTX", "CTX_SIZE", "ENGINE", "PORT", "ARGS", "PARALLEL", "BATCH_SIZE", "UBATCH_SIZE",
             "MAX_TOKENS", "GPU_LAYERS")
    parts = [f"{n}={_shown(n, cfg.env[n])}" for n in names if cfg.env.get(n)]
    for name in SECRET_ENV:
        value = cfg.env.get(name, "").strip()
        if value and name != "RUNPOD_API_KEY":
            parts.append(f"{name}={engine_key.OPT_OUT if engine_key.is_opt_out(value) else '<set, hidden>'}")
    return ", ".join(parts) or "no engine settings (the daemon starts without a model)"


def _shown(name: str, value: str) -> str:
    """ARGS with the value of every engine's key flag (--api-key, --password) masked."""
    if name != "ARGS":
        return value
    flags = tuple(flag for adapter in ADAPTERS.values() for flag in adapter.key_flags)
    try:
        return shlex.join(masked_flags(shlex.split(value), flags))
    except ValueError:
        return "<unparsable>"


def start_daemon(cfg: BootConfig, rep: Reporter, env: dict[str, str] | None = None) -> subprocess.Popen | None:
    """Start the daemon with env (default daemon_environment(cfg)); None in a dry run."""
    cmd = daemon_command(cfg)
    if cfg.dry_run:
        rep.would(f"create {cfg.models_dir} and {cfg.state_dir}")
        rep.would(f"start the agent daemon: {shlex.join(cmd)}  ({describe_engine_env(cfg)})")
        return None
    for folder in (cfg.models_dir, cfg.state_dir):
        folder.mkdir(parents=True, exist_ok=True)
    cfg.socket.parent.mkdir(parents=True, mode=0o700, exist_ok=True)  # contract B: parent dir 0700
    rep.step(f"starting the agent daemon: {shlex.join(cmd)}  ({describe_engine_env(cfg)})")
    try:
        return subprocess.Popen(cmd, env=env or daemon_environment(cfg), start_new_session=True)
    except OSError as exc:
        raise BootError(f"the agent daemon could not start: {exc}",
                        "check that the podtui package is installed in the image's venv") from None
