"""podtui's host-key pins, kept in an OpenSSH-format known_hosts file of its own.

podtui writes one line per pinned key, in the form OpenSSH reads:

    podtui-<podid> ssh-ed25519 AAAAC3Nz… podtui-verified
    [203.0.113.7]:2222 ssh-ed25519 AAAAC3Nz… podtui-unverified

The last field is the known_hosts comment, which OpenSSH ignores; podtui uses it to remember
whether the key was verified out of band (printed block, --fingerprint, `hostkey --pin`) or
accepted on first contact with --accept-unverified. A line without the marker (hand-written, or
hashed by `ssh-keygen -H`) counts as verified: writing it was a deliberate act.

It also reads every line a person wrote the way OpenSSH does, so that `ssh -o HostKeyAlias=<alias>
-o UserKnownHostsFile=<this file> -o StrictHostKeyChecking=yes` and podtui trust the same keys.
The rules, each from openssh-portable (checked against 9.2 and the 2026 master):
- a line is `[@marker] NAMES KEYTYPE BASE64 [comment]`, fields split by spaces and tabs; blank
  lines and `#` lines are comments; a line OpenSSH cannot read is skipped
  (hostfile.c hostkeys_foreach_file, sshkey.c sshkey_read);
- markers: `@revoked` (the key is refused for the names, even when a pin trusts it) and
  `@cert-authority` (a CA for host certificates); any other marker, or two, and the line is
  skipped (hostfile.c check_markers). podtui accepts no host certificates, so a CA line is no pin:
  podtui may trust less than OpenSSH, never more;
- NAMES starting with `|` is one hashed name `|1|<base64 salt>|<base64 HMAC-SHA1(salt, name)>`
  as `ssh-keygen -H` writes it (hostfile.c match_maybe_hashed, host_hash, extract_salt);
- otherwise NAMES is a comma-separated list of patterns, `*` matching any run of characters and
  `?` any one character, compared case-insensitively; a `!pattern` that matches makes the whole
  line not apply, whatever else matched (match.c match_pattern, match_pattern_list,
  match_hostname);
- the name looked up is the HostKeyAlias, lower-cased (ssh.c); a key is trusted when a matching
  unmarked line holds it and no matching `@revoked` line does (hostfile.c
  check_hostkeys_by_key_or_type, check_key_not_revoked).
Lines podtui did not write are kept byte for byte; podtui only ever writes plain single names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from podtui.errors import HostKeyNotVerified, UsageProblem
from podtui.ssh.hostkeys import HostKey

VERIFIED = "podtui-verified"
UNVERIFIED = "podtui-unverified"
REVOKED = "@revoked"
CERT_AUTHORITY = "@cert-authority"

HASH_MAGIC = "|1|"
_SALT_BYTES = 20           # SHA-1's size: extract_salt refuses any other salt length
_MAX_SUBPATTERN = 1023     # match_pattern_list copies a subpattern into char[1024]: longer never matches
_FIELD_SEPARATOR = re.compile(r"[ \t]+")
_B64_SPACE = str.maketrans("", "", " \t\n\v\f\r")  # b64_pton skips these inside the key field


# -- OpenSSH's name matching ---------------------------------------------------------------------

def _encode(text: str) -> bytes:
    # OpenSSH compares bytes: `?` is one byte and only ASCII letters change case (tolower in C).
    return text.encode("utf-8", "surrogateescape")


def _match_pattern(name: bytes, pattern: bytes) -> bool:
    """match.c match_pattern: `*` any run of bytes, `?` any one byte, the rest literal; the whole
    name must match. A set of positions in the pattern (an NFA), so no pattern can take long."""
    star, any_one = ord("*"), ord("?")

    def closure(states: set[int]) -> set[int]:
        for i in range(len(pattern)):      # a `*` may match nothing: step over it
            if i in states and pattern[i] == star:
                states.add(i + 1)
        return states

    states = closure({0})
    for byte in name:
        states = closure({i if pattern[i] == star else i + 1 for i in states
                          if i < len(pattern) and pattern[i] in (star, any_one, byte)})
        if not states:
            return False
    return len(pattern) in states


def match_pattern_list(name: str, patterns: str) -> int:
    """match.c match_hostname: name against comma-separated `patterns` (`*`, `?`, `!` negation),
    ASCII case-insensitively. Returns -1 when a negated pattern matches (whatever else does), 1 for
    a positive match, 0 for none. A subpattern of 1023 bytes or more ends the list as no match."""
    subject, text = _encode(name).lower(), _encode(patterns).lower()
    pieces = text.split(b",")
    if text.endswith(b","):      # OpenSSH stops at the end: a trailing comma opens no empty pattern
        pieces.pop()
    positive = 0
    for piece in pieces:
        negated = piece.startswith(b"!")
        pattern = piece[1:] if negated else piece
        if len(pattern) >= _MAX_SUBPATTERN:
            return 0
        if _match_pattern(subject, pattern):
            if negated:
                return -1
            positive = 1
    return positive


def hashed_name(name: str, salt: bytes) -> str:
    """`|1|<base64 salt>|<base64 HMAC-SHA1(salt, lower-cased name)>`: hostfile.c host_hash, the form
    `ssh-keygen -H` writes (salt: 20 bytes)."""
    digest = hmac.new(salt, _encode(name).lower(), hashlib.sha1).digest()
    return f"{HASH_MAGIC}{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _hashed_matches(name: str, field: str) -> bool:
    if not field.startswith(HASH_MAGIC):
        return False
    salt_text, sep, _ = field[len(HASH_MAGIC):].partition("|")
    if not sep or not salt_text:
        return False
    try:
        salt = base64.b64decode(salt_text, validate=True)
    except (binascii.Error, ValueError):
        return False
    # host_hash re-encodes and compares the whole field, so only the canonical form matches.
    return len(salt) == _SALT_BYTES and hmac.compare_digest(_encode(hashed_name(name, salt)), _encode(field))


def names_match(names: str, name: str) -> bool:
    """Whether a known_hosts NAMES field applies to `name` (a HostKeyAlias): hostfile.c
    match_maybe_hashed == 1. A field starting with `|` is one hashed name (a damaged one matches
    nothing); any other is a pattern list in which a matching `!pattern` wins."""
    if names.startswith("|"):
        return _hashed_matches(name, names)
    return match_pattern_list(name, names) == 1


# -- lines ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HostKeyPin:
    """A pinned host key under a known_hosts name, and whether it was verified out of band.
    `alias` is the name looked up (pins_for), or the name as written in the file (all_pins)."""

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


@dataclass(frozen=True)
class KnownHostsLine:
    """One line OpenSSH can read: its 1-based number, marker (None, REVOKED or CERT_AUTHORITY), the
    NAMES field as written and where it sits in the line's text, the key, and the podtui marker."""

    number: int
    marker: str | None
    names: str
    names_at: tuple[int, int]
    key: HostKey
    verified: bool

    def applies_to(self, name: str) -> bool:
        return names_match(self.names, name)

    @property
    def hashed(self) -> bool:
        return self.names.startswith("|")

    def describe(self, path: Path) -> str:
        return f"line {self.number} of {path} ({self.marker + ' ' if self.marker else ''}{self.names} " \
               f"{self.key.key_type} {self.key.fingerprint})"


def _next_blank(text: str, start: int) -> int:
    found = [i for i in (text.find(" ", start), text.find("\t", start)) if i >= 0]
    return min(found) if found else len(text)


def _skip_blanks(text: str, start: int) -> int:
    while start < len(text) and text[start] in " \t":
        start += 1
    return start


def parse_line(text: str, number: int) -> KnownHostsLine | None:
    """One known_hosts line as OpenSSH reads it (hostfile.c hostkeys_foreach_file, check_markers;
    sshkey.c sshkey_read), or None for a comment or a line OpenSSH skips: an unknown or repeated
    marker, no key type or key, a key podtui cannot decode or whose blob names another type."""
    text = text.split("\0", 1)[0]          # a C string ends at NUL
    at = _skip_blanks(text, 0)
    if at == len(text) or text[at] == "#":
        return None
    marker = None
    while text.startswith("@", at):
        # check_markers ends a marker at the line's first space, else its first tab.
        end = text.find(" ", at)
        end = text.find("\t", at) if end < 0 else end
        if marker is not None or end < 0 or text[at:end] not in (REVOKED, CERT_AUTHORITY):
            return None
        marker, at = text[at:end], _skip_blanks(text, end)
    names_end = _next_blank(text, at)
    rest = text[names_end:].strip(" \t")
    if names_end == len(text) or not rest or rest.startswith("#"):
        return None
    fields = _FIELD_SEPARATOR.split(rest)
    if len(fields) < 2:
        return None
    try:
        key = HostKey.from_base64(fields[0], fields[1].translate(_B64_SPACE))
    except ValueError:
        return None
    return KnownHostsLine(number, marker, text[at:names_end], (at, names_end), key, UNVERIFIED not in fields[2:])


def _without_name(text: str, line: KnownHostsLine, alias: str) -> str | None:
    """The line with every plain `alias` (any case) dropped from its names; None when no positive
    name is left (nothing would match it any more)."""
    wanted = _encode(alias).lower()
    names = [n for n in line.names.split(",") if _encode(n).lower() != wanted]
    if not any(n and not n.startswith("!") for n in names):
        return None
    start, end = line.names_at
    return text[:start] + ",".join(names) + text[end:]


def _parse_all(texts: Sequence[str | None]) -> list[KnownHostsLine]:
    parsed = (parse_line(text, number) for number, text in enumerate(texts, 1) if text is not None)
    return [line for line in parsed if line is not None]


# -- the file ------------------------------------------------------------------------------------

class KnownHosts:
    """Read and update the pins file; every write is atomic and leaves the file mode 0600. Every
    method raises OSError when the file exists but cannot be read."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _texts(self) -> list[str]:
        try:
            data = self.path.read_bytes().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return []
        texts = data.split("\n")             # OpenSSH's getline: only \n ends a line
        return texts[:-1] if texts and texts[-1] == "" else texts

    def lines(self) -> list[KnownHostsLine]:
        """Every line OpenSSH can read, in file order; [] when the file is missing."""
        return _parse_all(self._texts())

    def pins_for(self, alias: str) -> list[HostKeyPin]:
        """The pins OpenSSH would look up for HostKeyAlias `alias`: every unmarked line whose names
        apply to it (plain, pattern or hashed), one pin per key in file order, reported under alias
        and verified when any of its lines lacks the unverified marker; [] when the file is missing.
        `@revoked` keys are included (see revoked_for); `@cert-authority` lines are not pins."""
        pins: dict[HostKey, bool] = {}
        for line in self.lines():
            if line.marker is None and line.applies_to(alias):
                pins[line.key] = pins.get(line.key, False) or line.verified
        return [HostKeyPin(alias, key, verified) for key, verified in pins.items()]

    def revocations_for(self, alias: str) -> list[KnownHostsLine]:
        """The `@revoked` lines whose names apply to alias (pattern, negation, hashed: as for pins)."""
        return [line for line in self.lines() if line.marker == REVOKED and line.applies_to(alias)]

    def revoked_for(self, alias: str) -> list[HostKey]:
        """Keys a matching `@revoked` line refuses for alias; OpenSSH refuses them even when pinned."""
        return [line.key for line in self.revocations_for(alias)]

    def all_pins(self) -> list[HostKeyPin]:
        """Every pin in the file for listing, in file order, under each name it is written for: each
        plain name of a comma-separated list separately (left out when the same line negates it),
        a pattern as written (`[10.0.0.1]:*`), a hashed name as written (`|1|…|…`: it cannot be
        reversed). Negated names and marked lines are no pins; [] when the file is missing."""
        pins = []
        for line in self.lines():
            if line.marker is not None:
                continue
            names = [line.names] if line.hashed else line.names.split(",")
            for name in dict.fromkeys(names):
                literal = not any(ch in name for ch in "*?!|")
                if name and not name.startswith("!") and (not literal or line.applies_to(name)):
                    pins.append(HostKeyPin(name, line.key, line.verified))
        return pins

    def replace(self, alias: str, keys: list[HostKey], verified: bool, *,
                still_unverified: Collection[HostKey] = ()) -> list[HostKeyPin]:
        """Make `keys` the only keys OpenSSH (and podtui) trusts for alias, marked `verified` (except
        those in still_unverified, which stay unverified). Returns their pins, in the order given.

        Plain lines naming alias lose that name (a line left with no other name is dropped); lines
        podtui cannot rewrite — hashed names, or names that apply through a pattern — are kept byte
        for byte, and a pin is written only where such a line does not already pin the key as well.
        Every pin write in podtui goes through here, so the refusals below cover them all.
        Raises HostKeyNotVerified, writing nothing, when a key is refused by a matching `@revoked`
        line, or when a kept hashed or pattern line pins another, unrevoked key for alias (OpenSSH
        would go on trusting it, so the replacement would not be what it says); UsageProblem for
        an alias check_alias refuses; OSError when the file cannot be read or written."""
        check_alias(alias)
        keys = list(dict.fromkeys(keys))
        revocations = self.revocations_for(alias)
        revoked = {line.key for line in revocations}
        for key in keys:
            if key in revoked:
                line = next(line for line in revocations if line.key == key)
                raise HostKeyNotVerified(
                    f"{key.key_type} {key.fingerprint} is marked @revoked for {alias} in {self.path} "
                    f"(line {line.number}); nothing was pinned",
                    "a revoked key is never pinned or trusted: if the host presents or printed it, treat "
                    f"the host as compromised; if the @revoked line is a mistake, delete line "
                    f"{line.number} of {self.path} and pin again")
        texts: list[str | None] = list(self._texts())
        kept_pins: dict[HostKey, bool] = {}
        for line in _parse_all(texts):
            if line.marker is not None or not line.applies_to(alias):
                continue
            rewritten = None if line.hashed else _without_name(texts[line.number - 1] or "", line, alias)
            left = parse_line(rewritten, line.number) if rewritten is not None else None
            if line.hashed or (left is not None and left.applies_to(alias)):
                if line.key not in keys and line.key not in revoked:
                    raise self._cannot_replace(alias, line)
                kept_pins[line.key] = kept_pins.get(line.key, False) or line.verified
            if not line.hashed:
                texts[line.number - 1] = rewritten
        wanted = {key: verified and key not in still_unverified for key in keys}
        new = [HostKeyPin(alias, key, flag) for key, flag in wanted.items()
               if key not in kept_pins or (flag and not kept_pins[key])]
        self._write([t for t in texts if t is not None] + [pin.line() for pin in new])
        return [HostKeyPin(alias, key, flag or kept_pins.get(key, False)) for key, flag in wanted.items()]

    def mark_verified(self, alias: str, key: HostKey) -> list[HostKeyPin]:
        """Mark alias's pin of `key` verified (a fingerprint vouched for it), leaving its other pins
        as they are; revoked pins are dropped where podtui can rewrite them. Returns alias's pins.
        Raises as replace does."""
        pins = self.pins_for(alias)
        revoked = set(self.revoked_for(alias))
        return self.replace(alias, [p.key for p in pins if p.key not in revoked], verified=True,
                            still_unverified=[p.key for p in pins if not p.verified and p.key != key])

    def _cannot_replace(self, alias: str, line: KnownHostsLine) -> HostKeyNotVerified:
        kind = "a hashed name" if line.hashed else "a pattern"
        fix = (f"delete line {line.number} of {self.path} (`ssh-keygen -R {alias} -f {self.path}` deletes "
               f"every line for {alias}), then pin again") if line.hashed else (
               f"edit line {line.number} of {self.path}: delete it, or add !{alias} to its names so it no "
               f"longer applies to {alias}; then pin again")
        return HostKeyNotVerified(
            f"cannot replace the pins of {alias}: {line.describe(self.path)} is {kind} podtui does not "
            f"edit, and OpenSSH would go on trusting its key for {alias}; nothing was pinned", fix)

    def _write(self, lines: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".known_hosts.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write("".join(f"{line}\n" for line in lines).encode("utf-8", "surrogateescape"))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
