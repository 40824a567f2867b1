"""The backend's side of a link: the cluster's public key in authorized_keys, allowed one thing.

`restrict` turns off every forwarding, the pty, agent and X11 and ~/.ssh/rc; `port-forwarding`
turns local forwarding back on and `permitopen` limits it to this backend's ggml-rpc-server
(APP_BIND:APP_PORT); `command=` forces the link's session: by default one that only waits (so the
session exists, which is what makes OpenSSH set TCP_NODELAY, RPC.md fact 19) and ends when the link
does; the agent forces session_command, which also reports each new ggml-rpc-server process
(session.py) and falls back to the plain wait should Python fail to start. The line is marked with
the comment `podtui-cluster`, and a new key replaces the old one.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from remote_agent.links.command import REMOTE_COMMAND

MARK = "podtui-cluster"
_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/=]{40,4096}$")


class AuthorizeError(ValueError):
    """A public key that cannot be authorized; the message says what it must be."""


def session_command(python: str, record: Path) -> str:
    """The forced command that runs session.py with python (the agent's interpreter) on record (the
    backend agent's engine-process.json), or waits like REMOTE_COMMAND if that cannot start."""
    record = shlex.quote(str(Path(record).absolute()))  # sshd runs it in root's home
    return f"{shlex.quote(python)} -m remote_agent.links.session --record {record} 2>/dev/null || exec {REMOTE_COMMAND}"


def key_line(public_key: str, bind: str, port: int, command: str = REMOTE_COMMAND) -> str:
    """The authorized_keys line for the cluster key (only `type base64` of public_key is kept), forcing
    command. Raises AuthorizeError for anything that is not one OpenSSH public key, or a command that
    authorized_keys cannot quote (a `"`, a backslash or a line break, e.g. in the state dir's path)."""
    parts = public_key.split()
    key = " ".join(parts[:2])
    if not _KEY.match(key):
        raise AuthorizeError("public_key must be one OpenSSH public key (`ssh-ed25519 AAAA…`)")
    if any(c in command for c in '"\\\n\r'):
        raise AuthorizeError("the link's forced command cannot hold a double quote, a backslash or a line "
                             "break (authorized_keys cannot quote them): move the agent's state dir to a "
                             "plain path")
    options = f'restrict,port-forwarding,permitopen="{bind}:{port}",command="{command}"'
    return f"{options} {key} {MARK}"


def install(path: Path, line: str | None) -> None:
    """Replace the `podtui-cluster` line of authorized_keys path with line (None: remove it), keeping
    every other line; written to a temporary file and renamed, mode 0600."""
    path = Path(path).expanduser()
    kept = []
    if path.exists():
        kept = [entry for entry in path.read_text().splitlines() if not entry.rstrip().endswith(f" {MARK}")]
    if line is not None:
        kept.append(line)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.podtui")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(entry + "\n" for entry in kept))
    os.replace(temporary, path)
