"""A confirmation for what cannot be undone: the user types the thing's name to enable the button."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class TypedNameConfirm(ModalScreen[bool]):
    """Dismisses with True once `name` is typed exactly and confirmed (enter or the button);
    False on cancel or escape. Subclasses set the words and the button's id."""

    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    BUTTON_ID = "confirm"

    def __init__(self, name: str, *, title: str, body: str, button: str) -> None:
        super().__init__()
        self.expected = name
        self.title_text = title
        self.body = body
        self.button = button

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="danger"):
            yield Static(self.title_text, classes="dialog-title", markup=False)
            yield Static(self.body, markup=False, id="confirm-body")
            yield Input(placeholder=self.expected, id="confirm-name")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(self.button, id=self.BUTTON_ID, variant="error", disabled=True)

    @on(Input.Changed, "#confirm-name")
    def name_typed(self, event: Input.Changed) -> None:
        self.query_one(f"#{self.BUTTON_ID}", Button).disabled = event.value != self.expected

    @on(Input.Submitted, "#confirm-name")
    def name_submitted(self, event: Input.Submitted) -> None:
        if event.value == self.expected:
            self.dismiss(True)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == self.BUTTON_ID)

    def action_cancel(self) -> None:
        self.dismiss(False)
