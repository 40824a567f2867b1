"""The printed host-key block (team contract A), written by `remote-agent boot` into the pod log.

    -----BEGIN PODTUI HOST KEYS-----
    pod: <RUNPOD_POD_ID, or the hostname when not on Runpod>
    ssh-ed25519 SHA256:<base64, no padding> AAAAC3NzaC1lZDI1NTE5AAAA…
    ecdsa-sha2-nistp256 SHA256:<…> AAAAE2VjZHNh…
    -----END PODTUI HOST KEYS-----

Each key line is `<key type> <fingerprint as ssh-keygen -lf prints it> <base64 public key blob>`,
Ed25519 first. podtui's parser (podtui/ssh/hostkeys.py) reads it out of band; remote_agent never
imports podtui, so this module only writes. Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

BEGIN = "-----BEGIN PODTUI HOST KEYS-----"
END = "-----END PODTUI HOST KEYS-----"


class HostKeyFileError(Exception):
    """A public key file that is not a single OpenSSH public key line."""


@dataclass(frozen=True)
class HostPublicKey:
    key_type: str  # "ssh-ed25519", "ecdsa-sha2-nistp256", …
    blob_b64: str  # the base64 public key blob, as in the .pub file

    @property
    def fingerprint(self) -> str:
        return fingerprint_of_blob(self.blob_b64)

    def block_line(self) -> str:
        return f"{self.key_type} {self.fingerprint} {self.blob_b64}"


def fingerprint_of_blob(blob_b64: str) -> str:
    """`SHA256:<base64 of sha256(blob), no padding>`, exactly as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(base64.b64decode(blob_b64, validate=True)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def blob_key_type(blob_b64: str) -> str:
    """The key type string embedded at the start of an SSH public key blob."""
    raw = base64.b64decode(blob_b64, validate=True)
    (length,) = struct.unpack(">I", raw[:4])
    return raw[4 : 4 + length].decode("ascii")


def parse_public_key_line(line: str) -> HostPublicKey:
    """`<type> <base64> [comment]` → HostPublicKey; the blob must decode and name the same type."""
    parts = line.split()
    if len(parts) < 2:
        raise HostKeyFileError(f"not an OpenSSH public key line: {line[:40]!r}")
    key_type, blob = parts[0], parts[1]
    try:
        embedded = blob_key_type(blob)
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise HostKeyFileError(f"the {key_type} key's base64 blob does not decode: {exc}") from exc
    if embedded != key_type:
        raise HostKeyFileError(f"the key says {key_type} but its blob is a {embedded} key")
    return HostPublicKey(key_type, blob)


def read_public_key(path: Path) -> HostPublicKey:
    text = Path(path).read_text().strip()
    if not text or "\n" in text:
        raise HostKeyFileError(f"{path} must hold exactly one public key line")
    return parse_public_key_line(text)


def _order(key: HostPublicKey) -> tuple[int, str]:
    return (0 if key.key_type == "ssh-ed25519" else 1, key.key_type)


def format_block(pod: str, keys: list[HostPublicKey]) -> list[str]:
    """The block's lines (no newlines), Ed25519 first, ready to print one per line."""
    if not keys:
        raise ValueError("a host-key block needs at least one key")
    return [BEGIN, f"pod: {pod}", *(k.block_line() for k in sorted(keys, key=_order)), END]
