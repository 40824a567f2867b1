"""Host keys: OpenSSH fingerprints and the parser of the block a pod prints in its log.

The block (team contract A, printed by `remote-agent boot`):

    -----BEGIN PODTUI HOST KEYS-----
    pod: <RUNPOD_POD_ID, or the hostname when not on Runpod>
    ssh-ed25519 SHA256:<base64, no padding> AAAAC3NzaC1lZDI1NTE5AAAA…
    ecdsa-sha2-nistp256 SHA256:<…> AAAAE2VjZHNh…
    -----END PODTUI HOST KEYS-----

Logs arrive through proxies and log collectors, so every line may carry a prefix (timestamps,
source tags), ANSI colour and CRLF; several boots may sit in one log. The LAST complete block wins.
A block whose fingerprint does not match its key blob is refused outright (never silently skipped
in favour of an older one): that is exactly what a tampered log looks like.

Other processes write into the same log, so their lines can land inside a block. A key line is
found wherever it sits in its line (whatever prefix comes first). The `pod:` line is a line whose
remainder after such a prefix is exactly `pod: <one token>`: `[nvidia-device-plugin] pod: allocated
1 GPU` is someone else's line and is ignored. A prefixed line that does read `pod: <token>` cannot
be told apart from the pod's own (the prefix may be the collector's), so when a block holds such
lines naming different pods it is refused as ambiguous rather than one of them guessed.

A block whose key lines were wrapped by a log viewer or cut by a copy is reported as damaged
(DamagedPrintedBlock), with how to paste the fingerprint instead, when the evidence is in the block:
a key type followed by nothing or only a (cut) fingerprint, a fingerprint without its key type, a
key blob that ends early (it does not hold the fields its key type has), or key types with no
parsable key line. It is never reported as a log without keys nor as tampering. (A BEGIN or END
marker broken across lines is not recognised: such a log reads as having no complete block.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

from podtui.errors import HostKeyNotVerified

BEGIN_MARKER = "-----BEGIN PODTUI HOST KEYS-----"
END_MARKER = "-----END PODTUI HOST KEYS-----"

# CSI sequences (colours, cursor moves) and OSC sequences (titles, hyperlinks).
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_KEY_LINE = re.compile(
    r"(?P<type>ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521)|ssh-rsa|sk-[a-z0-9@.-]+)\s+"
    r"(?P<fp>SHA256:[A-Za-z0-9+/]+)\s+(?P<blob>[A-Za-z0-9+/]+={0,2})(?:\s|$)"
)
_KEY_TYPE = re.compile(r"(?<![\w.@-])(?:ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521)|ssh-rsa|sk-[a-z0-9@.-]+)"
                       r"(?=\s|$)")
# `pod: <one token>` ending the line, after any prefix (`[boot] `, a timestamp, `stdout F `).
_POD_LINE = re.compile(r"(?:^|\s)pod:[ \t]+(?P<pod>\S+)[ \t]*$")
# Length-prefixed fields of each key type's blob (RFC 4253 6.6, RFC 5656 3.1, PROTOCOL.u2f).
_BLOB_FIELDS = {"ssh-ed25519": 2, "ssh-rsa": 3, "ecdsa-sha2-nistp256": 3, "ecdsa-sha2-nistp384": 3,
                "ecdsa-sha2-nistp521": 3, "sk-ssh-ed25519@openssh.com": 3,
                "sk-ecdsa-sha2-nistp256@openssh.com": 4}


def fingerprint_of_blob(blob: bytes) -> str:
    """`SHA256:<base64 without padding>` of a public key blob, exactly as `ssh-keygen -lf` prints."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def normalize_fingerprint(text: str) -> str:
    """Accept what people paste (`SHA256:…`, stray spaces, padding); return the canonical form.

    A malformed fingerprint is bad input: ValueError, which the CLI turns into a usage error.
    """
    value = text.strip()
    if not value.startswith("SHA256:"):
        raise ValueError(f"{text!r} is not an OpenSSH SHA256 fingerprint (it must start with SHA256:)")
    body = value[len("SHA256:"):].rstrip("=")
    try:
        digest = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{text!r} is not valid base64 after SHA256:") from None
    if len(digest) != 32:
        raise ValueError(f"{text!r} is {len(digest)} bytes, a SHA256 fingerprint is 32")
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def key_type_of_blob(blob: bytes) -> str:
    """The key type named inside an SSH public key blob (its first length-prefixed string, RFC 4253
    6.6). Raises ValueError when the blob is too short or the length is implausible."""
    if len(blob) < 4:
        raise ValueError("key blob is too short")
    (length,) = struct.unpack(">I", blob[:4])
    if length > 64 or len(blob) < 4 + length:
        raise ValueError("key blob is malformed")
    return blob[4:4 + length].decode("ascii", errors="replace")


@dataclass(frozen=True)
class HostKey:
    """One public host key: its type and its wire blob (what a pin stores in full)."""

    key_type: str
    blob: bytes

    @property
    def fingerprint(self) -> str:
        """`SHA256:<base64 without padding>`, as `ssh-keygen -lf` prints it."""
        return fingerprint_of_blob(self.blob)

    @property
    def base64(self) -> str:
        """The blob in padded base64: the key field of a known_hosts or authorized_keys line."""
        return base64.b64encode(self.blob).decode()

    @classmethod
    def from_base64(cls, key_type: str, text: str) -> "HostKey":
        """The key from a `TYPE BASE64` pair (a known_hosts or printed-block line). Raises ValueError
        when the base64 is invalid, the blob malformed, or the blob names another type than key_type."""
        try:
            blob = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"the {key_type} key is not valid base64") from None
        inner = key_type_of_blob(blob)
        if inner != key_type:
            raise ValueError(f"the key blob says {inner}, the line says {key_type}")
        return cls(key_type, blob)

    @classmethod
    def from_paramiko(cls, key) -> "HostKey":
        """The key from a paramiko PKey (e.g. Transport.get_remote_server_key()); the type comes from
        its blob, so an RSA key is `ssh-rsa` whatever signature algorithm was negotiated."""
        blob = key.asbytes()
        return cls(key_type_of_blob(blob), blob)


@dataclass(frozen=True)
class PrintedBlock:
    """The host keys a pod printed at boot, in the order printed (Ed25519 first)."""

    pod: str | None
    keys: tuple[HostKey, ...]


class PrintedBlockError(HostKeyNotVerified):
    """The log has no usable host-key block, or the latest one is damaged or tampered with."""


class DamagedPrintedBlock(PrintedBlockError):
    """The latest block's key lines are wrapped or cut (a log viewer breaking long lines, a partial
    copy): the keys are in the log but cannot be read from it; the fingerprint can be pasted instead."""


class NoPrintedBlock(PrintedBlockError):
    """The log has no complete host-key block (yet): a pod still booting, or not podtui's image.
    Callers may wait and read again; any other PrintedBlockError must never be waited out."""


def strip_terminal_noise(text: str) -> list[str]:
    """Lines without ANSI sequences, CR or NUL, whatever line endings the log used."""
    clean = _ANSI.sub("", text).replace("\x00", "")
    return [line.rstrip("\r") for line in re.split(r"\r\n|\n|\r", clean)]


def _blob_is_whole(key_type: str, blob: bytes) -> bool:
    """True when the blob is exactly the length-prefixed fields its key type has (any number of
    whole fields for a type not listed): a blob cut short by a wrapped line fails this."""
    fields, offset = 0, 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            return False
        (length,) = struct.unpack(">I", blob[offset:offset + 4])
        offset += 4 + length
        if offset > len(blob):
            return False
        fields += 1
    return fields == _BLOB_FIELDS.get(key_type, fields) and fields >= 2


def _key_line_fragment(line: str) -> str | None:
    """What is wrong with a line that is a piece of a key line (None for any other line): a key type
    with nothing, or only a fingerprint (whole or cut), after it; or a fingerprint without its type."""
    for match in _KEY_TYPE.finditer(line):
        rest = line[match.end():].split()
        if not rest or (len(rest) == 1 and (rest[0].startswith("SHA256:") or "SHA256:".startswith(rest[0]))):
            return f"a {match.group(0)} line stops before its key"
    if "SHA256:" in line:
        return "a fingerprint stands on a line without its key type"
    return None


def _damaged(block_number: int, detail: str) -> DamagedPrintedBlock:
    return DamagedPrintedBlock(
        f"host-key block #{block_number} in the log is damaged: {detail}; its lines look wrapped or "
        "cut (a log viewer that breaks long lines, or a partial copy), so the keys cannot be read from it",
        "copy the block again from a view that keeps each key on one line; or compare the SHA256:… "
        "fingerprint in the log (43 characters after the colon; join it if it was broken) with the "
        "pod's console and pass it with --fingerprint SHA256:…, or pin it with "
        "`podtui hostkey TARGET --pin SHA256:…`",
    )


def _parse_block_lines(lines: list[str], block_number: int) -> PrintedBlock:
    pods: list[str] = []
    keys: list[HostKey] = []
    for line in lines:
        key_match = _KEY_LINE.search(line)
        if key_match:
            key_type, printed_fp, blob_text = key_match.group("type", "fp", "blob")
            try:
                blob = base64.b64decode(blob_text, validate=True)
                inner = key_type_of_blob(blob)
            except (binascii.Error, ValueError):
                blob, inner = b"", None   # incomplete base64 or type field: cut inside the key
            if inner is not None and inner != key_type:
                raise PrintedBlockError(
                    f"host-key block #{block_number} in the log has a damaged {key_type} line: "
                    f"the key blob says {inner}, the line says {key_type}",
                    "copy the block again from the pod's log, or compare the fingerprint by eye and "
                    "use --fingerprint SHA256:…",
                )
            if not _blob_is_whole(key_type, blob):
                raise _damaged(block_number, f"the {key_type} line ends inside its key")
            key = HostKey(key_type, blob)
            if key.fingerprint != printed_fp:
                raise PrintedBlockError(
                    f"host-key block #{block_number} in the log is inconsistent: the {key_type} line "
                    f"prints {printed_fp} but its key hashes to {key.fingerprint} (tampered or corrupted)",
                    "do not trust this log; read the fingerprints from the pod's console another way",
                )
            keys.append(key)
            continue
        fragment = _key_line_fragment(line)
        if fragment is not None:
            raise _damaged(block_number, fragment)
        pod_match = _POD_LINE.search(line)
        if pod_match and pod_match.group("pod") not in pods:
            pods.append(pod_match.group("pod"))
    if len(pods) > 1:
        raise PrintedBlockError(
            f"host-key block #{block_number} in the log names more than one pod "
            f"({', '.join(repr(p) for p in pods)}): another process printed a `pod:` line inside it",
            "compare the SHA256:… fingerprint in the log with the pod's console and pass it with "
            "--fingerprint SHA256:…, or pin it with `podtui hostkey TARGET --pin SHA256:…`",
        )
    if not keys:
        if any(_KEY_TYPE.search(line) for line in lines):
            raise _damaged(block_number, "it names key types but holds no whole key line")
        raise PrintedBlockError(
            f"host-key block #{block_number} in the log lists no keys",
            "check that the pod booted with podtui's image (remote-agent boot prints the keys)",
        )
    return PrintedBlock(pods[0] if pods else None, tuple(keys))


def parse_printed_blocks(text: str) -> PrintedBlock:
    """The last complete host-key block in a log. Raises NoPrintedBlock when there is none,
    DamagedPrintedBlock when its key lines are wrapped or cut, and PrintedBlockError when it lists
    no keys, names two pods, or a fingerprint does not match its key."""
    lines = strip_terminal_noise(text)
    complete: list[list[str]] = []
    truncated = 0
    current: list[str] | None = None
    for line in lines:
        if BEGIN_MARKER in line:
            if current is not None:
                truncated += 1  # a BEGIN without END: a boot that died or a log cut short
            current = []
        elif END_MARKER in line:
            if current is not None:
                complete.append(current)
            current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        truncated += 1
    if not complete:
        detail = (f"{truncated} block(s) start but never end (truncated)" if truncated
                  else f"no {BEGIN_MARKER} line")
        raise NoPrintedBlock(
            f"the log has no complete host-key block: {detail}",
            "wait until the pod has finished booting and fetch its log again, or pass "
            "--fingerprint SHA256:… copied from the pod's console",
        )
    return _parse_block_lines(complete[-1], len(complete))


def format_block(pod: str, keys: list[HostKey]) -> str:
    """The block as a pod prints it (used by tests and by `podtui hostkey --show`)."""
    body = [f"pod: {pod}"] + [f"{k.key_type} {k.fingerprint} {k.base64}" for k in keys]
    return "\n".join([BEGIN_MARKER, *body, END_MARKER]) + "\n"
