"""Probe, compare and pin host keys: once, for `podtui hosts add`, `podtui hostkey` and the TUI.

The presented key comes from a key-exchange-only probe (no login, nothing sent, no pin checked);
what it is compared with comes out of band: a fingerprint the user read on the machine, or the
block the pod printed in its log (podtui.ssh.hostkeys). A key is pinned only when the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from podtui.errors import HostKeyNotVerified
from podtui.ssh.connection import ConnectOptions
from podtui.ssh.hostkeys import HostKey, PrintedBlock
from podtui.ssh.known_hosts import HostKeyPin, KnownHosts
from podtui.ssh.target import SshTarget
from podtui.services.sessions import build_connection


def probe(target: SshTarget, known_hosts: KnownHosts, connect_timeout_s: float = 10.0) -> HostKey:
    """The key target's server presents, after key exchange only. Raises CannotConnect."""
    return build_connection(target, known_hosts, ConnectOptions(connect_timeout=connect_timeout_s)) \
        .probe_host_key()


def pin_if_presented(target: SshTarget, known_hosts: KnownHosts, expected: str, *,
                     connect_timeout_s: float = 10.0, outcome: str = "nothing was pinned",
                     fix: str = "compare with the fingerprint the pod printed; if they differ, "
                                "someone may be in the middle") -> list[HostKeyPin]:
    """Pin target's host key whose fingerprint is `expected` (canonical `SHA256:…`), verified,
    replacing target's pins; returns the new pins. The key may be of any type the server holds
    (a console may show the ECDSA fingerprint while the server prefers ed25519): when the first
    key presented is not it, each other key type is asked for. Raises HostKeyNotVerified (its
    title lists what was presented and says `outcome`; its fix is `fix`) when no key the server
    holds has that fingerprint or when known_hosts refuses the pin (the key is @revoked; see
    KnownHosts.replace), and CannotConnect when the probe fails."""
    connection = build_connection(target, known_hosts, ConnectOptions(connect_timeout=connect_timeout_s))
    presented = [connection.probe_host_key()]
    if presented[0].fingerprint != expected:
        presented = connection.host_keys(first=presented[0])
    match = next((key for key in presented if key.fingerprint == expected), None)
    if match is None:
        shown = ", ".join(f"{key.key_type} {key.fingerprint}" for key in presented)
        raise HostKeyNotVerified(
            f"{target.label} presented {shown}, not the expected {expected}; {outcome}", fix)
    return known_hosts.replace(target.alias, [match], verified=True)


@dataclass(frozen=True)
class Comparison:
    """A presented key beside what the pod printed and what is pinned (fingerprints or None)."""

    presented: HostKey
    printed: str | None        # the printed key of the presented type (else the block's first)
    pinned: str | None         # today's pin of the presented type

    @property
    def matches(self) -> bool:
        return self.printed is not None and self.printed == self.presented.fingerprint


def compare(presented: HostKey, block: PrintedBlock | None, pins: list[HostKeyPin]) -> Comparison:
    """Line the presented key up with the printed block (None: nothing printed) and the pins."""
    printed = None
    if block is not None:
        same_type = [k for k in block.keys if k.key_type == presented.key_type]
        printed = (same_type or list(block.keys))[0].fingerprint
    pinned = [pin for pin in pins if pin.key.key_type == presented.key_type]
    return Comparison(presented, printed, pinned[0].key.fingerprint if pinned else None)


def pin_checked(known_hosts: KnownHosts, alias: str, presented: HostKey, block: PrintedBlock | None,
                *, verified: bool) -> list[HostKeyPin]:
    """Pin after the user compared: verified and matching the block → every key the pod printed;
    verified otherwise → the presented key; not verified → the presented key marked UNVERIFIED.
    Raises HostKeyNotVerified when known_hosts refuses the pin (see KnownHosts.replace)."""
    if verified:
        matches = block is not None and compare(presented, block, []).matches
        keys = list(block.keys) if block is not None and matches else [presented]
        return known_hosts.replace(alias, keys, verified=True)
    return known_hosts.replace(alias, [presented], verified=False)
