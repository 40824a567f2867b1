"""The backend's side of a link: the cluster's public key in authorized_keys, allowed one thing.

`restrict` turns off every forwarding, the pty, agent and X11 and ~/.ssh/rc; `port-forwarding`
turns local forwarding back on and `permitopen` limits it to this backend's ggml-rpc-server
(APP_BIND:APP_PORT); `command=` forces a command that only waits (so the session exists, which
is what makes OpenSSH set TCP_NODELAY, RPC.md fact 19) and ends when the link does. The line is
marked with the comment `podtui-cluster`, and a new key replaces the old one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from remote_agent.links.command import REMOTE_COMMAND

MARK = "podtui-cluster"
_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/=]{40,4096}$")


class AuthorizeError(ValueError):
    """A public key that cannot be authorized; the message says what it must be."""


def key_line(public_key: str, bind: str, port: int) -> str:
    """The authorized_keys line for the cluster key (only `type base64` of public_key is kept).
    Raises AuthorizeError for anything that is not one OpenSSH public key."""
    parts = public_key.split()
    key = " ".join(parts[:2])
    if not _KEY.match(key):
        raise AuthorizeError("public_key must be one OpenSSH public key (`ssh-ed25519 AAAA…`)")
    options = f'restrict,port-forwarding,permitopen="{bind}:{port}",command="{REMOTE_COMMAND}"'
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
