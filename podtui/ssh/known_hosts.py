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

from podtui.errors import UsageProblem
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
        """The known_hosts line `ALIAS TYPE BASE64 podtui-(un)verified`; UsageProblem for a bad alias."""
        check_alias(self.alias)
        return f"{self.alias} {self.key.key_type} {self.key.base64} {VERIFIED if self.verified else UNVERIFIED}"


def check_alias(alias: str) -> str:
    """A known_hosts name podtui may write: one plain name (`podtui-<id>`, `[host]:port`, host), never a
    list, a pattern, a hashed name or anything that would split the line. Returns alias unchanged;
    raises UsageProblem otherwise."""
    if (not alias or alias.startswith("|") or any(ch in alias for ch in ",*?!#@")
            or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in alias)):
        raise UsageProblem(f"{alias[:80]!r} cannot be a known_hosts name (lists, patterns and spaces are refused)",
                           "give the host as a plain name or address")
    return alias


def _parse_line(line: str) -> HostKeyPin | None:
    """A pin from one known_hosts line; None for comments, markers and lines we cannot read."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#") or stripped.startswith("@"):
        return None
    return _parse_fields(stripped.split())


def _parse_revoked(line: str) -> HostKeyPin | None:
    """The key of an `@revoked NAMES KEY` line (OpenSSH refuses it for those names)."""
    fields = line.split()
    if len(fields) < 4 or fields[0] != "@revoked":
        return None
    return _parse_fields(fields[1:])


def _parse_fields(fields: list[str]) -> HostKeyPin | None:
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
        """The pins of every readable line whose (comma-separated) names include alias, in file
        order, each reported under alias; [] when the file is missing. `@`-marked lines are not pins.
        Raises OSError when the file exists but cannot be read."""
        pins = []
        for line in self._lines():
            pin = _parse_line(line)
            if pin and alias in pin.alias.split(","):
                pins.append(HostKeyPin(alias, pin.key, pin.verified))
        return pins

    def revoked_for(self, alias: str) -> list[HostKey]:
        """Keys an `@revoked` line refuses for alias (or for every host, `*`)."""
        keys = []
        for line in self._lines():
            pin = _parse_revoked(line)
            if pin and ({alias, "*"} & set(pin.alias.split(","))):
                keys.append(pin.key)
        return keys

    def all_pins(self) -> list[HostKeyPin]:
        """One pin per readable, unmarked line, in file order, under the line's names field as
        written (possibly a comma-separated list); [] when the file is missing."""
        return [pin for pin in map(_parse_line, self._lines()) if pin]

    def replace(self, alias: str, keys: list[HostKey], verified: bool) -> list[HostKeyPin]:
        """Make `keys` the only pins for alias. A hand-written line listing alias among other names
        keeps the other names only; other lines are untouched. Returns the new pins; raises
        UsageProblem for an alias check_alias refuses, OSError when the file cannot be written."""
        check_alias(alias)
        kept = []
        for line in self._lines():
            pin = _parse_line(line)
            if pin and alias in pin.alias.split(","):
                others = [name for name in pin.alias.split(",") if name != alias]
                if others:
                    kept.append(" ".join([",".join(others), *line.split()[1:]]))
                continue
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
