"""Default locations of the agent's socket, state and models (contract B). Standard library only."""

from __future__ import annotations

import os
from pathlib import Path


def default_socket_path(env: dict[str, str] | None = None) -> Path:
    """REMOTE_AGENT_SOCKET, else /run/remote-agent/agent.sock as root, else a per-user runtime path."""
    env = os.environ if env is None else env
    if env.get("REMOTE_AGENT_SOCKET"):
        return Path(env["REMOTE_AGENT_SOCKET"])
    if os.geteuid() == 0:
        return Path("/run/remote-agent/agent.sock")
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "remote-agent.sock"
    return Path(f"/tmp/remote-agent-{os.getuid()}") / "agent.sock"


def default_state_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("REMOTE_AGENT_STATE_DIR"):
        return Path(env["REMOTE_AGENT_STATE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/lib/remote-agent")
    return Path(env.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "remote-agent"


def default_models_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("MODEL_DIR"):
        return Path(env["MODEL_DIR"])
    if os.geteuid() == 0:
        return Path("/models")  # seed 000's default
    return Path(env.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "remote-agent" / "models"


def prepare_socket_dir(socket_path: Path) -> None:
    """Create the socket's parent 0700 (only its owner may even reach the socket)."""
    parent = socket_path.parent
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if parent.stat().st_uid == os.geteuid() and parent not in (Path("/tmp"), Path("/run")):
        os.chmod(parent, 0o700)
