"""The podtui Textual application (main screen). One factory builds it for the CLI and tests."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import DataTable, Footer, Header, Static

POD_COLUMNS = ("name", "provider", "status", "GPU", "$/hr", "uptime", "model", "ctx", "engine", "tunnel")


class PodtuiApp(App):
    TITLE = "podtui"
    BINDINGS = [("q", "quit", "Quit")]

    def compose(self) -> ComposeResult:
        yield Header()
        table = DataTable(id="pods", cursor_type="row")
        table.add_columns(*POD_COLUMNS)
        yield table
        yield Static(
            "No pod providers are wired in yet: Runpod, SSH hosts and the local pod arrive with "
            "issue #6. The CLI verbs `podtui tunnel`, `podtui hostkey` and `podtui agent` are the "
            "way in meanwhile (`podtui --help`).",
            id="notice",
        )
        yield Footer()


def build_app() -> PodtuiApp:
    return PodtuiApp()
