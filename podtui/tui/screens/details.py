"""`enter`: everything known about one pod, endpoint or cluster (any row dataclass), one field a line."""

from __future__ import annotations

from dataclasses import fields

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from podtui.display import format_price, format_uptime


def field_lines(row: object) -> list[str]:
    """`name  value` for each field of a row dataclass; units shown, empty values as `—`."""
    lines = []
    for field in fields(row):
        name, value = field.name, getattr(row, field.name)
        if name == "price_per_hour" and value is not None:
            value = format_price(value) + "/hr"
        elif name == "price_per_worker_hr" and value is not None:
            name, value = "price", format_price(value) + "/hr per worker"
        elif name == "uptime_s":
            name, value = "uptime", format_uptime(value)
        elif name == "idle_timeout_s" and value is not None:
            name, value = "idle timeout", f"{value} s"
        elif name == "idle_minutes" and value is not None:
            name, value = "idle", f"{int(value)} min"
        elif isinstance(value, dict):
            value = ", ".join(f"{v} {k}" for k, v in value.items())
        elif isinstance(value, (tuple, list)):
            value = ("\n" + " " * 17).join(map(str, value))
        lines.append(f"{name:<16} {value if value not in (None, '') else '—'}")
    return lines


class RowDetails(ModalScreen[None]):
    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, row: object, lines: list[str] | None = None) -> None:
        super().__init__()
        self.row = row
        self.lines = lines if lines is not None else field_lines(row)   # a cluster row brings its own

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):   # an endpoint's warnings can be long
            yield Static(str(getattr(self.row, "name", "") or getattr(self.row, "key", "")),
                         classes="dialog-title", markup=False)
            yield Static("\n".join(self.lines), markup=False, id="details-text")

    def action_close(self) -> None:
        self.dismiss(None)


PodDetails = RowDetails   # the pods' name for it
