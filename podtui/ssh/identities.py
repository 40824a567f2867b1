"""Which keys to log in with, chosen the way OpenSSH's ssh(1) chooses them.

- `-i FILE` (IdentitiesOnly): that key alone. When FILE is protected by a passphrase and
  ssh-agent holds the same key (found by FILE.pub, as ssh does), the agent signs; otherwise the
  passphrase is asked on the terminal, and with no terminal the error says to `ssh-add` it.
- Otherwise: every ssh-agent key, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa that exist. A file
  whose key the agent already offered is not offered twice (each refused key counts against the
  server's MaxAuthTries); an encrypted file is asked for on a terminal, else skipped and named in
  the error if nothing else works.

Files are read lazily: a passphrase is asked only when that key's turn comes.
paramiko 5.1 raises TypeError("Key is password-protected…") for an encrypted file read without a
password (from cryptography's loader), ValueError for a wrong one; both are handled here.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko

from podtui.errors import CannotConnect
from podtui.ssh.hostkeys import fingerprint_of_blob

DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")
PASSPHRASE_TRIES = 3     # OpenSSH's NumberOfPasswordPrompts default

AskPassphrase = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Identity:
    """One key offered to the server: a label for messages (`agent: ssh-ed25519 SHA256:… comment`
    or the file's path) and the paramiko key (an AgentKey signs through ssh-agent)."""

    label: str
    key: paramiko.PKey


class KeyNeedsPassphrase(CannotConnect):
    """A key file is encrypted and there is no way to ask for its passphrase."""


@dataclass
class Skipped:
    """A key file that could not be offered, and why (shown when authentication fails)."""

    path: Path
    reason: str


def terminal_prompt() -> AskPassphrase | None:
    """A getpass-based passphrase prompt when stdin and stderr are a terminal, else None.
    Only the CLI uses it: the TUI owns the terminal and never prompts."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None

    def ask(path: str) -> str | None:
        try:
            return getpass.getpass(f"Enter passphrase for key '{path}': ", stream=sys.stderr)
        except (EOFError, KeyboardInterrupt):
            return None
    return ask


def agent_keys(use_agent: bool = True) -> list[paramiko.PKey]:
    """The keys ssh-agent holds ([] with no SSH_AUTH_SOCK, or when the agent cannot be reached)."""
    if not use_agent or not os.environ.get("SSH_AUTH_SOCK"):
        return []
    try:
        return list(paramiko.Agent().get_keys())
    except (paramiko.SSHException, OSError):
        return []   # an unreachable agent is no reason to give up on the key files


def _agent_label(key: paramiko.PKey) -> str:
    comment = getattr(key, "comment", "") or ""
    if isinstance(comment, bytes):
        comment = comment.decode(errors="replace")
    return f"agent: {key.get_name()} {fingerprint_of_blob(key.asbytes())}" + (f" {comment}" if comment else "")


def _public_blob(path: Path) -> bytes | None:
    """The public key blob in PATH.pub (`TYPE BASE64 [comment]`), None when missing or unreadable."""
    try:
        fields = Path(f"{path}.pub").read_text().split()
        return base64.b64decode(fields[1], validate=True) if len(fields) >= 2 else None
    except (OSError, IndexError, ValueError, binascii.Error):
        return None


def _is_encrypted_error(exc: BaseException) -> bool:
    return isinstance(exc, (TypeError, paramiko.PasswordRequiredException)) and "password" in str(exc).lower()


def load_file(path: Path, ask: AskPassphrase | None) -> paramiko.PKey:
    """The private key in path, asking for its passphrase (up to 3 times) when encrypted and ask is
    given. Raises CannotConnect: missing file, unreadable or not a key, or encrypted with no way to
    ask (`title` says "protected by a passphrase"), or three wrong passphrases."""
    try:
        return paramiko.PKey.from_path(str(path))
    except FileNotFoundError:
        raise CannotConnect(f"identity file {path} does not exist", "check the path given to -i") from None
    except Exception as exc:  # noqa: BLE001 - paramiko/cryptography raise TypeError, ValueError, SSHException…
        if not _is_encrypted_error(exc):
            raise CannotConnect(f"cannot read identity {path}: {str(exc) or type(exc).__name__}",
                                "give an OpenSSH private key (e.g. ~/.ssh/id_ed25519)") from None
    if ask is None:
        raise KeyNeedsPassphrase(
            f"identity {path} is protected by a passphrase, and ssh-agent does not hold it",
            f"load it once with `ssh-add {path}` (podtui then signs with the agent), or run podtui "
            "on a terminal to be asked for the passphrase")
    for _ in range(PASSPHRASE_TRIES):
        passphrase = ask(str(path))
        if passphrase is None:
            break
        try:
            return paramiko.PKey.from_path(str(path), password=passphrase.encode())
        except Exception:  # noqa: BLE001 - a wrong passphrase is a ValueError from cryptography
            continue
    raise CannotConnect(f"no correct passphrase for identity {path}",
                        f"check the passphrase, or load the key with `ssh-add {path}`")


def _explicit_identity(path: Path, use_agent: bool, ask: AskPassphrase | None) -> Identity:
    try:
        return Identity(str(path), load_file(path, None))
    except KeyNeedsPassphrase:
        blob = _public_blob(path)
        match = next((k for k in agent_keys(use_agent) if blob is not None and k.asbytes() == blob), None)
        if match is not None:
            return Identity(f"{path} (signed by ssh-agent)", match)
        if ask is None:
            raise
    return Identity(str(path), load_file(path, ask))


def identities(explicit: Path | None, key_dir: Path, *, use_agent: bool = True,
               ask: AskPassphrase | None = None, skipped: list[Skipped] | None = None) -> Iterator[Identity]:
    """The keys to offer, in OpenSSH's order (see the module docstring), loaded lazily.

    Yields Identity; appends to `skipped` each default key file that cannot be offered. Raises
    CannotConnect for an explicit key that cannot be used (missing, unreadable, encrypted with no
    agent copy and no way to ask)."""
    if explicit is not None:
        yield _explicit_identity(explicit, use_agent, ask)
        return
    held = agent_keys(use_agent)
    offered: set[bytes] = set()
    for key in held:
        offered.add(key.asbytes())
        yield Identity(_agent_label(key), key)
    for name in DEFAULT_IDENTITIES:
        path = key_dir / name
        if not path.exists():
            continue
        blob = _public_blob(path)
        if blob is not None and blob in offered:
            continue   # the agent already offered this key
        try:
            key = load_file(path, ask)
        except CannotConnect as exc:
            if skipped is not None:
                skipped.append(Skipped(path, exc.title))
            continue
        if key.asbytes() in offered:
            continue
        offered.add(key.asbytes())
        yield Identity(str(path), key)
