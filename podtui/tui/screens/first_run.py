"""First run without a Runpod API key: take the key (stored 0600 in podtui's config file by
podtui.config) or carry on with what works without one."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from podtui import paths

KEY_HELP = ("Create a key in the Runpod console (Settings → API Keys). podtui keeps it in "
            f"{paths.config_file()} with mode 0600 and never prints it.")


class FirstRunScreen(ModalScreen[str | None]):
    """Dismisses with the key typed (the app stores it in a worker), or None to carry on."""

    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape", "skip", "Carry on without")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("Welcome to podtui", classes="dialog-title")
            yield Static("No Runpod API key is configured. " + KEY_HELP, markup=False)
            yield Input(placeholder="Runpod API key (rpa_…)", password=True, id="api-key")
            yield Static("", id="key-problem", markup=False)
            yield Static("Without a key podtui still lists and drives this machine's local pod and "
                         "the SSH hosts you add with `podtui hosts add`; it asks again next start.",
                         markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Carry on without", id="skip")
                yield Button("Save key", id="save", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#api-key", Input).focus()

    @on(Input.Submitted, "#api-key")
    @on(Button.Pressed, "#save")
    def save(self) -> None:
        key = self.query_one("#api-key", Input).value.strip()
        problem = self.query_one("#key-problem", Static)
        if not key:
            problem.update("✘ paste the key first, or carry on without one")
        elif any(ch.isspace() for ch in key) or len(key) < 16:
            problem.update("✘ that does not look like a Runpod API key (no spaces, usually "
                           "starts with rpa_)")
        else:
            self.dismiss(key)

    @on(Button.Pressed, "#skip")
    def action_skip(self) -> None:
        self.dismiss(None)
