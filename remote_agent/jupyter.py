"""Jupyter in pod mode (seed 001; issue 20): started by `remote-agent boot`, reached only through the tunnel.

Seed 001's pod mode "initiates essential services like OpenSSH and Jupyter Lab". Runpod's own templates
expose Jupyter through Runpod's HTTP proxy (`startJupyter`, port 8888 public) — the route seed 000 warns
against. Here it listens on 127.0.0.1 only (`--ServerApp.ip=127.0.0.1`, no port retries) and is reached
with `podtui tunnel POD --jupyter`, over the SSH connection whose host key was verified.

Turned on by JUPYTER=1 or by a JUPYTER_PASSWORD (seed-compatible). Access always needs a secret:
- the token, generated once (secrets.token_urlsafe) into `<state dir>/jupyter-token`, mode 0600 (kept on
  the volume like the engine's key, so a bookmarked URL survives stop/resume);
- JUPYTER_PASSWORD, if set, as a second way in: hashed by Jupyter's own `jupyter_server.auth.passwd`
  (argon2) run with Jupyter's Python, the password passed on stdin, never on a command line.
Both go into a config file (`<state dir>/jupyter/jupyter_server_config.json`, mode 0600) named with
`--config`, so neither shows in `ps` nor in the DRYRUN output.

Boot supervises it (JupyterSupervisor, a thread): restarted with backoff (1 s doubling to 30 s, as the
engine's supervisor does), and after MAX_FAILURES quick failures in a row it stays down ("paused") with
the reason in the log, never a crash loop. Boot is the only writer of its state, `<state dir>/jupyter.json`;
the daemon reads that file for `status` (read_state). One owner per piece of state: boot starts and stops
Jupyter, so boot says how it is.

Variables: JUPYTER, JUPYTER_PASSWORD, JUPYTER_PORT (default 8888), JUPYTER_DIR (default: the volume,
/workspace), JUPYTER_BIN (default /opt/jupyter/bin/jupyter-lab, Jupyter's own venv; tests point it at
jupyter-server). Standard library only.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from remote_agent.child_env import without_secrets
from remote_agent.procgroup import pid_alive, terminate_popen

DEFAULT_PORT = 8888
DEFAULT_BIN = "/opt/jupyter/bin/jupyter-lab"
TOKEN_FILE = "jupyter-token"
STATE_FILE = "jupyter.json"
CONFIG_DIR = "jupyter"
FALSE_WORDS = {"", "0", "false", "no", "off"}
# Supervision, seconds (the engine's policy, remote_agent/engine/supervision.py Timings)
BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
MAX_FAILURES = 5  # quick failures in a row before it stays down
STABLE_AFTER_S = 60.0  # up this long: earlier failures are forgiven
READY_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0
# states written to jupyter.json
STARTING, RUNNING, RESTARTING, PAUSED, STOPPED = "starting", "running", "restarting", "paused", "stopped"


class JupyterError(Exception):
    """Bad JUPYTER_* input, or Jupyter cannot be set up; the message names the problem and the fix."""


def wanted(env: dict[str, str]) -> bool:
    """Whether the pod asks for Jupyter: JUPYTER truthy, or JUPYTER_PASSWORD set (seed 001)."""
    return (env.get("JUPYTER", "").strip().lower() not in FALSE_WORDS
            or bool(env.get("JUPYTER_PASSWORD", "").strip()))


@dataclass
class JupyterConfig:
    """What to run: bin (path), port (TCP, on 127.0.0.1), root_dir (notebooks), state_dir (token,
    config and state files), password (JUPYTER_PASSWORD or None; never printed)."""
    bin: str
    port: int
    root_dir: Path
    state_dir: Path
    password: str | None = field(default=None, repr=False)

    @property
    def token_path(self) -> Path:
        """`<state_dir>/jupyter-token` (0600): the token Jupyter requires."""
        return self.state_dir / TOKEN_FILE

    @property
    def config_path(self) -> Path:
        """`<state_dir>/jupyter/jupyter_server_config.json` (0600): token and hashed password, read via --config."""
        return self.state_dir / CONFIG_DIR / "jupyter_server_config.json"

    def command(self) -> list[str]:
        """The Jupyter command line: loopback only, the port exactly (no retries onto another)."""
        return [self.bin, f"--config={self.config_path}", "--no-browser", "--allow-root",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                f"--ServerApp.root_dir={self.root_dir}"]


def config_from_env(env: dict[str, str], volume_dir: Path, state_dir: Path) -> JupyterConfig | None:
    """The JupyterConfig the environment asks for, or None when Jupyter is not wanted.
    Raises JupyterError for a bad JUPYTER_PORT."""
    if not wanted(env):
        return None
    raw = env.get("JUPYTER_PORT", "").strip()
    port = DEFAULT_PORT
    if raw:
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise JupyterError(f"JUPYTER_PORT={raw!r} is not a TCP port; set 1-65535 (default {DEFAULT_PORT}) "
                               "or unset it")
        port = int(raw)
    root = Path(env.get("JUPYTER_DIR", "").strip() or volume_dir)
    return JupyterConfig(bin=env.get("JUPYTER_BIN", "").strip() or DEFAULT_BIN, port=port, root_dir=root,
                         state_dir=Path(state_dir), password=env.get("JUPYTER_PASSWORD", "").strip() or None)


def read_token(state_dir: Path) -> str | None:
    """The token kept in `<state_dir>/jupyter-token`, or None when there is none."""
    try:
        text = (Path(state_dir) / TOKEN_FILE).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def _write_private(path: Path, text: str) -> None:
    """Write text whole into path with mode 0600 (mkstemp's mode), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_token(state_dir: Path) -> str:
    """The kept token, generated on first use (mode 0600). Raises OSError when state_dir is not writable."""
    token = read_token(state_dir)
    path = Path(state_dir) / TOKEN_FILE
    if token is None:
        token = secrets.token_urlsafe(32)
        _write_private(path, token + "\n")
    elif path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return token


def hash_password(cfg: JupyterConfig) -> str:
    """JUPYTER_PASSWORD hashed by Jupyter itself (`jupyter_server.auth.passwd`, argon2) with the Python
    beside cfg.bin; the password goes in on stdin. Raises JupyterError when that Python cannot do it."""
    python = Path(cfg.bin).parent / "python"
    code = "import sys; from jupyter_server.auth import passwd; print(passwd(sys.stdin.read()))"
    try:
        done = subprocess.run([str(python), "-c", code], input=cfg.password, capture_output=True, text=True,
                              check=False, timeout=60, env=without_secrets())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JupyterError(f"JUPYTER_PASSWORD could not be hashed with {python}: {exc.__class__.__name__}; "
                           "check that Jupyter's venv is intact (the image installs it in /opt/jupyter)") from None
    hashed = done.stdout.strip()
    if done.returncode != 0 or ":" not in hashed:
        raise JupyterError(f"JUPYTER_PASSWORD could not be hashed with {python} (exit {done.returncode}); "
                           "check that jupyter_server is installed there")
    return hashed


def write_config(cfg: JupyterConfig, token: str) -> None:
    """The 0600 config file the command names: the token, and the hashed password when one is set."""
    config: dict = {"IdentityProvider": {"token": token}}
    if cfg.password:
        config["PasswordIdentityProvider"] = {"hashed_password": hash_password(cfg)}
    _write_private(cfg.config_path, json.dumps(config, indent=1) + "\n")


def environment(cfg: JupyterConfig) -> dict[str, str]:
    """Jupyter's (and its kernels') environment: the pod's without its secrets or JUPYTER_PASSWORD."""
    env = {k: v for k, v in without_secrets().items() if k != "JUPYTER_PASSWORD"}
    env["JUPYTER_RUNTIME_DIR"] = str(cfg.state_dir / CONFIG_DIR / "runtime")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- state: boot writes, the daemon reads ----------------------------------------------------------------


def write_state(state_dir: Path, **state) -> None:
    """Replace `<state_dir>/jupyter.json` with state (JSON-able; never the token)."""
    _write_private(Path(state_dir) / STATE_FILE, json.dumps({**state, "updated": time.time()}) + "\n")


def clear_state(state_dir: Path) -> None:
    """Remove `<state_dir>/jupyter.json` (this boot runs no Jupyter); the token is kept for a later one."""
    (Path(state_dir) / STATE_FILE).unlink(missing_ok=True)


def read_state(state_dir: Path) -> dict | None:
    """Jupyter's state for `status`: {"state": starting|running|restarting|paused|stopped, "port", "pid",
    "restarts", "last_error", "url", "updated"}, or None when boot never started Jupyter. A state whose
    pid is gone (boot was killed) reads as stopped."""
    try:
        state = json.loads((Path(state_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict):
        return None
    pid = state.get("pid")
    if state.get("state") in (STARTING, RUNNING) and isinstance(pid, int) and not pid_alive(pid):
        state.update(state=STOPPED, pid=None)
    return state


def port_open(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port within timeout seconds."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


# --- supervision --------------------------------------------------------------------------------------------


class JupyterSupervisor:
    """Runs Jupyter until shutdown: start, wait until its port answers, restart with backoff when it
    exits, stay down after MAX_FAILURES quick failures in a row. `log` takes one line."""

    def __init__(self, cfg: JupyterConfig, log: Callable[[str], None], *, backoff_s: float = BACKOFF_S,
                 max_backoff_s: float = MAX_BACKOFF_S, max_failures: int = MAX_FAILURES,
                 stable_after_s: float = STABLE_AFTER_S) -> None:
        self.cfg, self.log = cfg, log
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.max_failures, self.stable_after_s = max_failures, stable_after_s
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._lock = threading.Lock()

    def _state(self, state: str, **extra) -> None:
        pid = self.proc.pid if self.proc is not None and state in (STARTING, RUNNING) else None
        write_state(self.cfg.state_dir, state=state, port=self.cfg.port, pid=pid, restarts=self.restarts,
                    url=f"http://127.0.0.1:{self.cfg.port}/lab", **extra)

    def _spawn(self) -> subprocess.Popen | None:
        try:
            with self._lock:
                self.proc = subprocess.Popen(self.cfg.command(), env=environment(self.cfg), start_new_session=True,
                                             cwd=self.cfg.root_dir)
            return self.proc
        except OSError as exc:
            self.proc = None
            self.log(f"[jupyter] could not start {self.cfg.bin}: {exc}")
            return None

    def run(self, shutdown: threading.Event) -> None:
        failures = 0
        last_error = None
        while not shutdown.is_set():
            started = time.monotonic()
            proc = self._spawn()
            self._state(STARTING, last_error=last_error)
            if proc is not None:
                self._wait_ready(proc, shutdown)
                while proc.poll() is None and not shutdown.wait(0.2):
                    pass
            if shutdown.is_set():
                break
            code = proc.returncode if proc is not None else None
            last_error = f"exited with code {code}" if proc is not None else f"{self.cfg.bin} could not start"
            failures = 1 if time.monotonic() - started >= self.stable_after_s else failures + 1
            if failures > self.max_failures:
                self.log(f"[jupyter] {last_error}; stopped after {failures - 1} restarts in a row instead of "
                         "restarting forever: read its lines above, fix the cause, restart the pod")
                self._state(PAUSED, last_error=last_error)
                return
            delay = min(self.backoff_s * 2 ** (failures - 1), self.max_backoff_s)
            self.log(f"[jupyter] {last_error}; restarting in {delay:g} s")
            self._state(RESTARTING, last_error=last_error, restart_in_s=delay)
            self.restarts += 1
            shutdown.wait(delay)
        self.stop()
        self._state(STOPPED, last_error=last_error)

    def _wait_ready(self, proc: subprocess.Popen, shutdown: threading.Event) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while proc.poll() is None and not shutdown.is_set() and time.monotonic() < deadline:
            if port_open(self.cfg.port):
                self.log(f"[jupyter] up on 127.0.0.1:{self.cfg.port} (pid {proc.pid})")
                self._state(RUNNING)
                return
            shutdown.wait(0.2)

    def stop_for_exit(self) -> None:
        """Stop Jupyter and record `stopped` now: boot is about to exit, and its supervisor thread (a
        daemon thread) may not get to write it first."""
        self.stop()
        self._state(STOPPED)

    def stop(self) -> None:
        """Stop Jupyter and its kernels (its process group); safe to call twice."""
        with self._lock:
            proc = self.proc
        if proc is not None and proc.poll() is None:
            terminate_popen(proc, STOP_GRACE_S)
