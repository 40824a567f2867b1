"""The one place a failure is shown: what went wrong and what to do about it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ErrorDialog(ModalScreen[None]):
    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape,enter", "dismiss_dialog", "Close")]

    def __init__(self, title: str, fix: str, *, context: str = "") -> None:
        super().__init__()
        self.error_title = title
        self.fix = fix
        self.context = context

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="error"):
            yield Static("Error" + (f" — {self.context}" if self.context else ""),
                         classes="dialog-title")
            yield Static(self.error_title, id="error-title", markup=False)
            if self.fix:
                yield Static(f"Fix: {self.fix}", id="error-fix", markup=False)
            yield Button("Close", id="close", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_dismiss_dialog(self) -> None:
        self.dismiss(None)
