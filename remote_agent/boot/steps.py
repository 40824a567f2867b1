"""The steps of `remote-agent boot`, each of which prints what it does (or would do, dry).

Host keys live on the volume so their fingerprints survive stop/resume; the private keys never
leave the pod. Nothing here prints a secret: the Reporter masks HF_TOKEN / RUNPOD_API_KEY /
API_KEY values and the engine's key should one ever reach a line, and ARGS is shown with its key
flags' values masked. Standard library only.
"""

from __future__ import annotations

import os
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
    HostKeyFileError,
    HostPublicKey,
    format_block,
    parse_public_key_line,
    read_public_key,
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


# --- host keys ----------------------------------------------------------------------------------


def _public_from_private(cfg: BootConfig, key: Path) -> str:
    result = _run([cfg.ssh_keygen, "-y", "-f", str(key)])
    if result.returncode != 0:
        raise BootError(
            f"the host key {key} cannot be read ({result.stderr.strip() or 'ssh-keygen -y failed'})",
            f"move {key} aside (it is not deleted automatically, because a new key means every "
            "podtui that pinned this pod must re-verify it) and boot again to generate a new one",
        )
    return result.stdout.strip()


def _generate(cfg: BootConfig, kind: str, key: Path, extra: tuple[str, ...]) -> None:
    # Generate under a temporary name, then rename, so an interrupted boot never leaves half a key.
    tmp = key.with_name(key.name + ".new")
    for leftover in (tmp, Path(f"{tmp}.pub")):
        leftover.unlink(missing_ok=True)
    result = _run([cfg.ssh_keygen, "-q", "-t", kind, *extra, "-N", "", "-C",
                   f"podtui-host-{cfg.pod_id}", "-f", str(tmp)])
    if result.returncode != 0:
        raise BootError(f"ssh-keygen could not generate the {kind} host key: {result.stderr.strip()}",
                        f"check that {key.parent} is writable and has free space")
    os.replace(f"{tmp}.pub", f"{key}.pub")
    os.replace(tmp, key)


def ensure_host_keys(cfg: BootConfig, rep: Reporter) -> list[HostPublicKey]:
    """Keep the host keys on the volume, generating each one only when it is missing."""
    if not os.path.ismount(cfg.volume_dir):
        rep.warn(f"no volume mounted at {cfg.volume_dir}: host keys are kept in the container disk, so "
                 "they change after a stop/resume and podtui will ask you to re-verify; attach a "
                 f"volume at {cfg.volume_dir} (or set REMOTE_AGENT_HOST_KEY_DIR) to keep them")
    keys: list[HostPublicKey] = []
    if not cfg.host_key_dir.is_dir():
        if cfg.dry_run:
            rep.would(f"create {cfg.host_key_dir} (mode 0700)")
        else:
            cfg.host_key_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
    for kind, name, extra in HOST_KEY_KINDS:
        key = cfg.host_key_dir / name
        pub = Path(f"{key}.pub")
        if not key.exists():
            if cfg.dry_run:
                rep.would(f"generate the {kind} host key: {cfg.ssh_keygen} -q -t {kind} "
                          f"{' '.join(extra)} -N '' -f {key}".replace("  ", " "))
                continue
            _generate(cfg, kind, key, extra)
            rep.step(f"generated a new {kind} host key in {key}")
        else:
            derived = _public_from_private(cfg, key)
            current = pub.read_text().strip() if pub.exists() else ""
            if current.split()[:2] != derived.split()[:2]:
                if cfg.dry_run:
                    rep.would(f"rewrite {pub} from the private key (it is missing or does not match)")
                    keys.append(parse_public_key_line(derived))
                    continue
                pub.write_text(derived + "\n")
                rep.warn(f"{pub} was missing or did not match its private key; rewrote it")
            rep.step(f"kept the existing {kind} host key in {key}")
        if not cfg.dry_run:
            os.chmod(key, 0o600)
        try:
            keys.append(read_public_key(pub))
        except HostKeyFileError as exc:
            raise BootError(f"host public key {pub}: {exc}",
                            f"delete {pub}; it is rebuilt from the private key on the next boot")
    return keys


# --- PUBLIC_KEY → authorized_keys ---------------------------------------------------------------


def keys_in_text(text: str) -> list[tuple[str, str, str]]:
    """Every `(type, blob, comment)` in text: one key a line, or several run together on a line."""
    found: list[tuple[str, str, str]] = []
    for line in text.splitlines():
        tokens = line.split()
        i = 0
        while i < len(tokens):
            if i + 1 < len(tokens):
                try:
                    key = parse_public_key_line(f"{tokens[i]} {tokens[i + 1]}")
                except HostKeyFileError:
                    key = None
                if key is not None:
                    j = i + 2
                    comment: list[str] = []
                    while j < len(tokens):
                        try:
                            parse_public_key_line(" ".join(tokens[j : j + 2]))
                            break
                        except HostKeyFileError:
                            comment.append(tokens[j])
                            j += 1
                    found.append((key.key_type, key.blob_b64, " ".join(comment)))
                    i = j
                    continue
            i += 1
    return found


def install_public_keys(cfg: BootConfig, rep: Reporter) -> int:
    """Append PUBLIC_KEY's keys to authorized_keys once each (dir 0700, file 0600)."""
    path = cfg.authorized_keys
    offered = keys_in_text(cfg.public_key)
    if cfg.public_key.strip() and not offered:
        rep.warn("PUBLIC_KEY holds no valid OpenSSH public key; set it to the contents of your "
                 "~/.ssh/id_ed25519.pub (Runpod: Settings → SSH public keys)")
    existing_text = path.read_text() if path.exists() else ""
    present = {(t, b) for t, b, _ in keys_in_text(existing_text)}
    new = []
    for key_type, blob, comment in offered:
        if (key_type, blob) not in present:
            present.add((key_type, blob))
            new.append(" ".join(filter(None, (key_type, blob, comment))))
    if not present:
        rep.warn("no SSH public key: set PUBLIC_KEY (Runpod fills it from your account's SSH "
                 "keys) or nobody can log in, and podtui cannot reach this pod")
    if cfg.dry_run:
        rep.would(f"add {len(new)} key(s) from PUBLIC_KEY to {path} (mode 0600)")
        return len(new)
    path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if new:
        with path.open("a") as handle:
            if existing_text and not existing_text.endswith("\n"):
                handle.write("\n")
            handle.write("\n".join(new) + "\n")
    path.touch()
    os.chmod(path, 0o600)
    rep.step(f"{path}: added {len(new)} key(s) from PUBLIC_KEY, {len(present)} in all")
    return len(new)


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
