"""`enter`: everything known about one pod."""

from __future__ import annotations

from dataclasses import fields

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from podtui.services.front import PodRow
from podtui.display import format_price, format_uptime


class PodDetails(ModalScreen[None]):
    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, row: PodRow) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        lines = []
        for field in fields(self.row):
            name, value = field.name, getattr(self.row, field.name)
            if name == "price_per_hour" and value is not None:
                value = format_price(value) + "/hr"
            elif name == "uptime_s":
                name, value = "uptime", format_uptime(value)
            elif name == "idle_minutes" and value is not None:
                name, value = "idle", f"{int(value)} min"
            lines.append(f"{name:<16} {value if value not in (None, '') else '—'}")
        with Vertical(id="dialog"):
            yield Static(self.row.name, classes="dialog-title", markup=False)
            yield Static("\n".join(lines), markup=False, id="details-text")

    def action_close(self) -> None:
        self.dismiss(None)
