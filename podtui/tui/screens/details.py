"""`enter`: everything known about one pod."""

from __future__ import annotations

from dataclasses import fields

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from podtui.tui.services import PodRow
from podtui.tui.widgets.pod_table import format_price, format_uptime


class PodDetails(ModalScreen[None]):
    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, row: PodRow) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        lines = []
        for field in fields(self.row):
            value = getattr(self.row, field.name)
            if field.name == "price_per_hour":
                value = format_price(value) + "/hr"
            elif field.name == "uptime_s":
                value = format_uptime(value)
            lines.append(f"{field.name:<16} {value if value not in (None, '') else '—'}")
        with Vertical(id="dialog"):
            yield Static(self.row.name, classes="dialog-title", markup=False)
            yield Static("\n".join(lines), markup=False, id="details-text")

    def action_close(self) -> None:
        self.dismiss(None)
