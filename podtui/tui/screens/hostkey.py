"""`v`: compare the host key the server presents with the one the pod printed, then pin it.

A mismatch is red and has no accept button. With nothing printed to compare against, the user can
paste the fingerprint from the pod's console, or trust the key unverified only after ticking an
explicit warning — never silently.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Static

from podtui.services.front import HostKeyCheck

PIN_VERIFIED = "verified"
PIN_UNVERIFIED = "unverified"


class HostKeyDialog(ModalScreen[str | None]):
    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, check: HostKeyCheck) -> None:
        super().__init__()
        self.check = check

    @property
    def mismatch(self) -> bool:
        return self.check.printed is not None and not self.check.matches

    def compose(self) -> ComposeResult:
        check = self.check
        classes = "danger" if self.mismatch else ""
        with Vertical(id="dialog", classes=f"wide {classes}".strip()):
            yield Static(f"Host key of {check.pod_name} ({check.key_type})",
                         classes="dialog-title", markup=False)
            with Horizontal(id="fingerprints"):
                with Vertical(classes="fingerprint"):
                    yield Static("The server presents", classes="label")
                    yield Static(check.presented, id="presented", markup=False)
                with Vertical(classes="fingerprint"):
                    yield Static(f"The pod printed ({check.source})", classes="label")
                    yield Static(check.printed or "— nothing to compare against —",
                                 id="printed", markup=False)
            if check.pinned:
                yield Static(f"Pinned today: {check.pinned}", id="pinned", markup=False)
            yield Static(self._verdict(), id="verdict", markup=False,
                         classes=self._verdict_class())
            if check.printed is None:
                yield Input(placeholder="paste the SHA256:… fingerprint from the pod's console",
                            id="pasted")
                yield Checkbox("I cannot verify it: trust this key anyway and mark it UNVERIFIED",
                               id="accept-unverified")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                if check.printed is None:
                    yield Button("Pin unverified", id="pin-unverified", variant="warning",
                                 disabled=True)
                    yield Button("Pin verified", id="pin-verified", variant="success",
                                 disabled=True)
                elif check.matches:
                    yield Button("Pin verified", id="pin-verified", variant="success")

    def _verdict(self) -> str:
        if self.check.matches:
            return "✔ The fingerprints match: this is the pod's own key."
        if self.mismatch:
            return ("✘ MISMATCH: the server's key is not the one the pod printed. Someone may "
                    "be in the middle, or this is a different pod. podtui will not connect; "
                    "it cannot be accepted here.")
        return ("⚠ Not verified: podtui could not read the pod's printed fingerprint. Compare "
                "it by eye with the pod's console, or paste it above. Trusting an unverified "
                "key means anyone in the middle could read your prompts.")

    def _verdict_class(self) -> str:
        return "ok" if self.check.matches else "bad" if self.mismatch else "warn"

    @on(Input.Changed, "#pasted")
    def pasted(self, event: Input.Changed) -> None:
        text = event.value.strip()
        verdict = self.query_one("#verdict", Static)
        matches = text == self.check.presented
        self.query_one("#pin-verified", Button).disabled = not matches
        if not text:
            verdict.update(self._verdict())
            verdict.set_classes("warn")
        elif matches:
            verdict.update("✔ The pasted fingerprint matches the server's key.")
            verdict.set_classes("ok")
        else:
            verdict.update("✘ The pasted fingerprint does NOT match the server's key.")
            verdict.set_classes("bad")

    @on(Checkbox.Changed, "#accept-unverified")
    def accept_ticked(self, event: Checkbox.Changed) -> None:
        self.query_one("#pin-unverified", Button).disabled = not event.value

    @on(Button.Pressed, "#pin-verified")
    def pin_verified(self) -> None:
        self.dismiss(PIN_VERIFIED)

    @on(Button.Pressed, "#pin-unverified")
    def pin_unverified(self) -> None:
        if self.query_one("#accept-unverified", Checkbox).value:
            self.dismiss(PIN_UNVERIFIED)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
