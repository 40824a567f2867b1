"""Default locations of the agent's socket, state and models (contract B). Standard library only."""

from __future__ import annotations

import os
import stat
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


class UnsafeSocketPlace(Exception):
    """The socket's folder (or the socket) could be replaced by another user; the message says how."""


def check_socket_place(socket_path: Path, *, socket_too: bool = False) -> None:
    """Refuse a socket folder another user owns or may write into without the sticky bit (they could
    swap the socket for an impostor that reads every request), and with `socket_too` a socket that
    belongs to someone else. Root's and our own folders pass; so does a sticky one such as /tmp."""
    me = os.geteuid()
    parent = socket_path.parent
    info = parent.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeSocketPlace(f"{parent} is not a folder; pass --socket to a path in a folder you own")
    if info.st_uid not in (me, 0):
        raise UnsafeSocketPlace(f"{parent} belongs to another user (uid {info.st_uid}), who could replace the "
                                "agent's socket; remove it or pass --socket to a folder you own")
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        raise UnsafeSocketPlace(f"{parent} is writable by other users (mode {stat.S_IMODE(info.st_mode):o}), who "
                                f"could replace the agent's socket; chmod go-w {parent} or pass --socket")
    if socket_too:
        try:
            owner = socket_path.lstat().st_uid
        except FileNotFoundError:
            return
        if owner not in (me, 0):
            raise UnsafeSocketPlace(f"{socket_path} belongs to another user (uid {owner}): it is not your "
                                    "agent's socket; remove it or pass --socket")


def prepare_socket_dir(socket_path: Path) -> None:
    """Create the socket's parent 0700 (only its owner may even reach the socket), then check that
    nobody else can replace what is in it."""
    parent = socket_path.parent
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if parent.stat().st_uid == os.geteuid() and parent not in (Path("/tmp"), Path("/run")):
        os.chmod(parent, 0o700)
    check_socket_place(socket_path)
