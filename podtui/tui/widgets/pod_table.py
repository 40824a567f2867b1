"""The main table of pods: one row per pod from every provider, kept on the same pod across
refreshes and filtered by `/`."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

from podtui.display import format_price, format_uptime
from podtui.services.front import PodRow

POD_COLUMNS = ("name", "provider", "status", "GPU", "$/hr", "uptime", "model", "ctx", "engine",
               "tunnel")
MAX_WIDTH = {"model": 48, "tunnel": 26, "name": 24}
IDLE_WARNING_MINUTES = 30
STATUS_STYLES = {"RUNNING": "bold green", "EXITED": "yellow", "STOPPED": "yellow",
                 "TERMINATED": "dim", "CREATED": "cyan", "STARTING": "cyan"}


def row_cells(row: PodRow) -> tuple:
    status = Text(row.status, style=STATUS_STYLES.get(row.status.upper(), ""))
    engine = Text(row.engine_state or "—",
                  style="red" if row.engine_state == "failed" else
                  "green" if row.engine_state == "ready" else "")
    return (row.name, row.provider, status, row.gpu or "—", format_price(row.price_per_hour),
            format_uptime(row.uptime_s), row.model or "—", str(row.ctx) if row.ctx else "—",
            engine, row.tunnel_url or "off")


def cell_width(value: object) -> int:
    return value.cell_len if isinstance(value, Text) else cell_len(str(value))


def row_matches(row: PodRow, text: str) -> bool:
    if not text:
        return True
    needle = text.lower()
    return any(needle in str(value).lower() for value in
               (row.name, row.provider, row.status, row.gpu, row.model, row.engine_state,
                row.tunnel_url))


def summary_text(rows: list[PodRow], problems: list[str]) -> str:
    running = [row for row in rows if row.running]
    total = sum(row.price_per_hour or 0.0 for row in running)
    parts = [f"{len(running)} running · ${total:.2f}/hr"]
    idle = [row for row in running
            if row.idle_minutes is not None and row.idle_minutes >= IDLE_WARNING_MINUTES]
    for row in idle:
        parts.append(f"⚠ {row.name} idle {int(row.idle_minutes)} min, still billing "
                     f"{format_price(row.price_per_hour)}/hr")
    parts.extend(f"⚠ {problem}" for problem in problems)
    return "  ·  ".join(parts)


class PodTable(DataTable):
    """DataTable of PodRows. Row keys are PodRow.key, so the cursor stays on its pod."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.rows_by_key: dict[str, PodRow] = {}
        self._widths: list[int] = []
        self._set_columns([len(label) for label in POD_COLUMNS])

    def _set_columns(self, widths: list[int]) -> None:
        # Fixed widths that we compute: DataTable's auto-width grows columns after a render that
        # it has already cached at the narrower width (its cache key has no width), which left
        # cells cut to the header's width on a refreshed table.
        self.clear(columns=True)
        for label, width in zip(POD_COLUMNS, widths):
            self.add_column(label, width=width, key=label)
        self._widths = widths

    def show(self, rows: list[PodRow], filter_text: str = "") -> None:
        selected = self.selected_key
        shown = [row for row in rows if row_matches(row, filter_text)]
        cells = [row_cells(row) for row in shown]
        widths = [min(MAX_WIDTH.get(label, 24),
                      max([len(label)] + [cell_width(c[i]) for c in cells]))
                  for i, label in enumerate(POD_COLUMNS)]
        if widths != self._widths:
            self._set_columns(widths)
        else:
            self.clear()
        self.rows_by_key = {}
        for row, row_cells_ in zip(shown, cells):
            self.add_row(*row_cells_, key=row.key)
            self.rows_by_key[row.key] = row
        if selected in self.rows_by_key:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    @property
    def selected_key(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 — cursor outside an emptied table
            return None
        return key.value

    @property
    def selected(self) -> PodRow | None:
        key = self.selected_key
        return self.rows_by_key.get(key) if key else None
