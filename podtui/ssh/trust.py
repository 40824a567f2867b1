"""The decision whether a presented host key may be trusted, made before authentication.

Rules (ARCHITECTURE.md, "Host key"):
- pins and `@revoked` lines are the known_hosts lines whose names apply to the alias under
  OpenSSH's rules (patterns, negation, hashed names: podtui.ssh.known_hosts), so podtui trusts
  exactly what `ssh -o HostKeyAlias=<alias> -o UserKnownHostsFile=<file>` trusts, or less;
- a key refused by a matching `@revoked` line is never trusted nor pinned, whatever else says so;
- fingerprints given out of band (--fingerprint, a printed block) must include the presented key;
- an existing pin must match the presented key — a changed key is never re-pinned silently, even
  when a fingerprint vouches for it (replacing a pin is `podtui hostkey --pin`, a deliberate act);
- no pin and no fingerprint: refuse, unless the caller explicitly accepted an unverified first
  contact — then the key is pinned and marked unverified.
Every reconnect runs the same check against the pins, so a swapped server is refused mid-session.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from podtui.errors import HostKeyNotVerified
from podtui.ssh.hostkeys import HostKey
from podtui.ssh.known_hosts import HostKeyPin, KnownHosts


@dataclass
class TrustOutcome:
    """What a host-key check decided for the presented key: trusted, pinned now or not, and a
    warning to show (set when the key is trusted without out-of-band verification)."""

    key: HostKey
    verified: bool          # False only for a pin accepted with --accept-unverified
    newly_pinned: bool
    warning: str | None = None


@dataclass
class HostKeyPolicy:
    """The trust rules above for one known_hosts alias; `outcomes` records every accepted check."""

    known_hosts: KnownHosts
    alias: str
    label: str
    fingerprints: tuple[str, ...] = ()           # canonical SHA256:… given out of band
    accept_unverified: bool = False
    outcomes: list[TrustOutcome] = field(default_factory=list)

    def preferred_key_types(self) -> list[str]:
        """Host-key algorithms to offer first, so the server presents a key type we pinned (a
        revoked pin does not count, as in OpenSSH's order_hostkeyalgs)."""
        order: list[str] = []
        revoked = set(self.known_hosts.revoked_for(self.alias))
        for pin in self.known_hosts.pins_for(self.alias):
            if pin.key in revoked:
                continue
            names = ["rsa-sha2-512", "rsa-sha2-256"] if pin.key.key_type == "ssh-rsa" else [pin.key.key_type]
            order += [n for n in names if n not in order]
        return order

    def check(self, presented: HostKey) -> TrustOutcome:
        """Decide on the presented key by the rules above, pinning it when they allow (first contact
        with a fingerprint or --accept-unverified; a fingerprint vouching for the presented key
        also marks that one pin verified, and no other). Raises HostKeyNotVerified for a revoked
        key, a fingerprint mismatch, a changed pin, an unverified first contact, or a pin write
        KnownHosts.replace refuses; OSError when the pins file cannot be read or written."""
        outcome = self._decide(presented)
        self.outcomes.append(outcome)
        return outcome

    def _refuse(self, title: str, fix: str) -> HostKeyNotVerified:
        return HostKeyNotVerified(title, fix)

    def _decide(self, presented: HostKey) -> TrustOutcome:
        pins = self.known_hosts.pins_for(self.alias)
        presented_fp = presented.fingerprint
        revoking = [line for line in self.known_hosts.revocations_for(self.alias) if line.key == presented]
        if revoking:
            raise self._refuse(
                f"host key of {self.label} ({presented.key_type} {presented_fp}) is marked @revoked for "
                f"{self.alias} in {self.known_hosts.path} (line {revoking[0].number})",
                "a revoked key is never trusted; check the pod's printed fingerprints and remove the "
                "@revoked line only if it was a mistake",
            )
        if self.fingerprints and presented_fp not in self.fingerprints:
            raise self._refuse(
                f"host key of {self.label} does not match: expected {', '.join(self.fingerprints)}, "
                f"presented {presented.key_type} {presented_fp}",
                "compare with the fingerprints the pod printed in its log; if they differ, someone "
                "may be in the middle — do not connect",
            )
        if pins:
            match = next((p for p in pins if p.key == presented), None)
            if match is None:
                expected = ", ".join(f"{p.key.key_type} {p.key.fingerprint}" for p in pins)
                raise self._refuse(
                    f"host key of {self.label} CHANGED: pinned {expected}, presented "
                    f"{presented.key_type} {presented_fp}",
                    "if the pod really was rebuilt, check the new fingerprint out of band and run "
                    f"`podtui hostkey TARGET --pin {presented_fp}`; otherwise someone may be in the "
                    f"middle. Pins: {self.known_hosts.path}",
                )
            if not match.verified and self.fingerprints:
                # The fingerprints vouch for the presented key only: other unverified pins stay so.
                self.known_hosts.mark_verified(self.alias, presented)
                return TrustOutcome(presented, True, False)
            warning = None if match.verified else (
                f"the pinned host key of {self.label} ({presented_fp}) was accepted WITHOUT "
                "out-of-band verification; verify it with `podtui hostkey TARGET --pin SHA256:…`")
            return TrustOutcome(presented, match.verified, False, warning)
        if self.fingerprints:
            self.known_hosts.replace(self.alias, [presented], verified=True)
            return TrustOutcome(presented, True, True)
        if self.accept_unverified:
            self.known_hosts.replace(self.alias, [presented], verified=False)
            return TrustOutcome(
                presented, False, True,
                f"WARNING: trusting {self.label}'s host key {presented.key_type} {presented_fp} "
                "WITHOUT verification (--accept-unverified). Anyone in the middle of this first "
                "connection would now be trusted. The pin is marked unverified; compare the "
                "fingerprint with the pod's console and run `podtui hostkey TARGET --pin …`.",
            )
        raise self._refuse(
            f"no verified host key for {self.label} (first contact); it presented "
            f"{presented.key_type} {presented_fp}",
            "pass --fingerprint SHA256:… as printed in the pod's log (or `podtui hostkey TARGET "
            "--from-log FILE`); --accept-unverified trusts it blindly and marks the pin unverified",
        )


def describe_pins(pins: list[HostKeyPin]) -> list[dict]:
    """The pins as JSON-ready dicts: `{"type", "fingerprint", "verified"}`, in the given order."""
    return [{"type": p.key.key_type, "fingerprint": p.key.fingerprint, "verified": p.verified}
            for p in pins]
