"""The local pod's agent daemon: started and stopped on demand, reached through a local bridge.

The daemon is the same `remote-agent daemon` that runs inside a Runpod pod, started on this machine
with its socket, state and log under podtui's state dir (`podtui locate`). It is reached through
podtui.agent.local_bridge (`remote-agent rpc` as a local subprocess), so `AgentClient` speaks to it
unchanged. No network port is opened for the agent; the engine listens on 127.0.0.1 as in a pod.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from remote_agent.procgroup import terminate_group

from podtui import paths
from podtui.errors import PodtuiError
from podtui.agent.client import AgentClient
from podtui.agent.local_bridge import AGENT, LocalBridge
from podtui.providers.base import DEFAULT_ENGINE_PORT, ProviderError

SEED_NAMES = ("MODEL", "CTX", "ENGINE", "ARGS")
# The daemon reads these as its engine's key (remote_agent/engine_key.py). In a shell they usually
# belong to some other service, so the local daemon never inherits them (`--no-api-key` sets
# API_KEY=none explicitly; ARGS may name a key of the user's own).
NOT_INHERITED = (*SEED_NAMES, "PORT", "API_KEY", "LLAMA_API_KEY")
SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes; keep a margin


def local_dir() -> Path:
    return paths.state_dir() / "local"


def socket_path(base: Path | None = None) -> Path:
    """`<state dir>/local/agent.sock`, or a short path under /tmp when that is too long for AF_UNIX."""
    base = base or local_dir()
    path = base / "agent.sock"
    if len(str(path)) <= SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha256(str(base).encode()).hexdigest()[:16]
    return Path(f"/tmp/podtui-{os.getuid()}") / f"{digest}.sock"


@dataclass
class LocalSettings:
    """How the local daemon was (or will be) started; kept in daemon.json for a resume."""

    models_dir: str
    port: int = DEFAULT_ENGINE_PORT
    engine_bin_dir: str | None = None
    # MODEL, CTX, ENGINE, ARGS of the last start (never HF_TOKEN). The daemon restores its saved
    # config only when started with the MODEL that config was born with, so a resume passes it again.
    seed_env: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "LocalSettings | None":
        try:
            data = json.loads(path.read_text())
            seed = data.get("seed_env") if isinstance(data.get("seed_env"), dict) else {}
            return cls(str(data["models_dir"]), int(data.get("port") or DEFAULT_ENGINE_PORT),
                       data.get("engine_bin_dir"), {str(k): str(v) for k, v in seed.items() if k in SEED_NAMES})
        except (OSError, ValueError, KeyError, TypeError):
            return None


class LocalDaemon:
    def __init__(self, base: Path | None = None) -> None:
        self.base = base or local_dir()
        self.socket = socket_path(self.base)
        self.pid_file = self.base / "daemon.pid"
        self.settings_file = self.base / "daemon.json"
        self.log_file = self.base / "daemon.log"

    # -- state -------------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The daemon's pid when it is alive and really our daemon (a reused pid is not)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if b"daemon" in cmdline and str(self.socket).encode() in cmdline else None

    def running(self) -> bool:
        return self.pid() is not None and self.socket.exists()

    def settings(self) -> LocalSettings:
        return LocalSettings.load(self.settings_file) or LocalSettings(str(self.base / "models"))

    def client(self, hello_timeout: float = 10.0) -> AgentClient:
        """An opened agent client over a local bridge; the caller closes it."""
        client = AgentClient(LocalBridge(self.socket), "remote-agent rpc (local)", hello_timeout=hello_timeout)
        client.open()
        return client

    # -- start / stop ------------------------------------------------------------------------
    def start(self, settings: LocalSettings, env: dict[str, str], timeout_s: float = 20.0) -> int:
        """Start the daemon detached (it outlives this command); return its pid once it greets."""
        if self.running():
            raise ProviderError(f"the local pod is already running (pid {self.pid()})",
                                "swap its model with `podtui agent local swap MODEL`, or `podtui local stop` first")
        self.base.mkdir(parents=True, exist_ok=True, mode=0o700)
        Path(settings.models_dir).mkdir(parents=True, exist_ok=True)
        args = [*AGENT, "daemon", "--socket", str(self.socket), "--state-dir", str(self.base / "agent-state"),
                "--models-dir", settings.models_dir]
        if settings.engine_bin_dir:
            args += ["--engine-bin-dir", settings.engine_bin_dir]
        child_env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        child_env.update(settings.seed_env)
        child_env.update(env)  # secrets (HF_TOKEN) pass through here and are never saved
        child_env["PORT"] = str(settings.port)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(args, env=child_env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, cwd=str(self.base))
        self.pid_file.write_text(f"{proc.pid}\n")
        self.settings_file.write_text(json.dumps(asdict(settings)))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ProviderError(f"the local agent daemon exited at once (code {proc.returncode}): "
                                    f"{self._log_tail()}", f"read {self.log_file}")
            if self.socket.exists():
                try:
                    self.client(hello_timeout=5).close()
                    return proc.pid
                except PodtuiError:
                    pass
            time.sleep(0.1)
        raise ProviderError(f"the local agent daemon did not answer within {timeout_s:g} s",
                            f"read {self.log_file}; stop it with `podtui local stop`")

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM the daemon's process group (the daemon stops its engine), SIGKILL it after
        grace_s seconds (remote_agent.procgroup, the agent's own helper); the stopped pid, or
        None when it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return None
        terminate_group(pid, grace_s)   # the daemon leads its own session (start_new_session)
        self.pid_file.unlink(missing_ok=True)
        return pid

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_file.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return ""
