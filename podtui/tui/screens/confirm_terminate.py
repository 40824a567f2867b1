"""`D`: terminating deletes the pod and its volume, so the user types the pod's name to confirm."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class ConfirmTerminate(ModalScreen[bool]):
    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, pod_name: str) -> None:
        super().__init__()
        self.pod_name = pod_name

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="danger"):
            yield Static(f"Terminate {self.pod_name}?", classes="dialog-title", markup=False)
            yield Static("This deletes the pod and its volume: downloaded models and its host "
                         "keys are gone. Type the pod's name to confirm.", markup=False)
            yield Input(placeholder=self.pod_name, id="confirm-name")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Terminate", id="terminate", variant="error", disabled=True)

    @on(Input.Changed, "#confirm-name")
    def name_typed(self, event: Input.Changed) -> None:
        self.query_one("#terminate", Button).disabled = event.value != self.pod_name

    @on(Input.Submitted, "#confirm-name")
    def name_submitted(self, event: Input.Submitted) -> None:
        if event.value == self.pod_name:
            self.dismiss(True)

    @on(Button.Pressed, "#terminate")
    def terminate(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)
