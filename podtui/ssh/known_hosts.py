"""podtui's host-key pins, kept in an OpenSSH-format known_hosts file of its own.

One line per pinned key, in the form OpenSSH reads:

    podtui-<podid> ssh-ed25519 AAAAC3Nz… podtui-verified
    [203.0.113.7]:2222 ssh-ed25519 AAAAC3Nz… podtui-unverified

The last field is the known_hosts comment, which OpenSSH ignores; podtui uses it to remember
whether the key was verified out of band (printed block, --fingerprint, `hostkey --pin`) or
accepted on first contact with --accept-unverified. So `ssh -o UserKnownHostsFile=<this file>
-o HostKeyAlias=<alias> -o StrictHostKeyChecking=yes` trusts exactly what podtui trusts.
Lines podtui did not write (comments, hashed or marked entries) are kept untouched.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from podtui.ssh.hostkeys import HostKey

VERIFIED = "podtui-verified"
UNVERIFIED = "podtui-unverified"


@dataclass(frozen=True)
class HostKeyPin:
    """A pinned host key under a known_hosts name, and whether it was verified out of band."""

    alias: str
    key: HostKey
    verified: bool

    def line(self) -> str:
        return f"{self.alias} {self.key.key_type} {self.key.base64} {VERIFIED if self.verified else UNVERIFIED}"


def _parse_line(line: str) -> HostKeyPin | None:
    """A pin from one known_hosts line; None for comments, markers and lines we cannot read."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#") or stripped.startswith("@"):
        return None
    fields = stripped.split()
    if len(fields) < 3:
        return None
    names, key_type, blob_text = fields[:3]
    try:
        key = HostKey.from_base64(key_type, blob_text)
    except ValueError:
        return None
    verified = UNVERIFIED not in fields[3:]
    # A line may list several comma-separated names; report one pin per name.
    return HostKeyPin(names, key, verified)


class KnownHosts:
    """Read and update the pins file; every write is atomic and leaves the file mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def pins_for(self, alias: str) -> list[HostKeyPin]:
        pins = []
        for line in self._lines():
            pin = _parse_line(line)
            if pin and alias in pin.alias.split(","):
                pins.append(HostKeyPin(alias, pin.key, pin.verified))
        return pins

    def all_pins(self) -> list[HostKeyPin]:
        return [pin for pin in map(_parse_line, self._lines()) if pin]

    def replace(self, alias: str, keys: list[HostKey], verified: bool) -> list[HostKeyPin]:
        """Make `keys` the only pins for alias (other names' lines untouched)."""
        kept = []
        for line in self._lines():
            pin = _parse_line(line)
            if pin and pin.alias == alias:
                continue  # our own single-name lines for this alias are replaced
            kept.append(line)
        pins = [HostKeyPin(alias, key, verified) for key in keys]
        self._write(kept + [pin.line() for pin in pins])
        return pins

    def _write(self, lines: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".known_hosts.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write("".join(f"{line}\n" for line in lines))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
