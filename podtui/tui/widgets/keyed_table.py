"""A DataTable of rows that carry their own key (pods, endpoints): the cursor stays on its row
across refreshes, a filter hides rows, and column widths are computed, not left to DataTable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable


def cell_width(value: object) -> int:
    return value.cell_len if isinstance(value, Text) else cell_len(str(value))


class KeyedTable(DataTable):
    """Subclasses name COLUMNS and MAX_WIDTH and say how a row looks (`cells`) and whether it
    matches a filter (`matches`). Rows need a `key` attribute (str, unique)."""

    COLUMNS: Sequence[str] = ()
    MAX_WIDTH: dict[str, int] = {}
    DEFAULT_MAX_WIDTH = 24

    def cells(self, row: Any) -> tuple:
        raise NotImplementedError

    def matches(self, row: Any, text: str) -> bool:
        return True

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.rows_by_key: dict[str, Any] = {}
        self._widths: list[int] = []
        self._set_columns([len(label) for label in self.COLUMNS])

    def _set_columns(self, widths: list[int]) -> None:
        # Fixed widths that we compute: DataTable's auto-width grows columns after a render that
        # it has already cached at the narrower width (its cache key has no width), which left
        # cells cut to the header's width on a refreshed table.
        self.clear(columns=True)
        for label, width in zip(self.COLUMNS, widths):
            self.add_column(label, width=width, key=label)
        self._widths = widths

    def show(self, rows: list, filter_text: str = "") -> None:
        """Replace the rows with `rows` (those matching filter_text), keeping the cursor's row."""
        selected = self.selected_key
        shown = [row for row in rows if self.matches(row, filter_text)]
        cells = [self.cells(row) for row in shown]
        widths = [min(self.MAX_WIDTH.get(label, self.DEFAULT_MAX_WIDTH),
                      max([len(label)] + [cell_width(c[i]) for c in cells]))
                  for i, label in enumerate(self.COLUMNS)]
        if widths != self._widths:
            self._set_columns(widths)
        else:
            self.clear()
        self.rows_by_key = {}
        for row, row_cells in zip(shown, cells):
            self.add_row(*row_cells, key=row.key)
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
    def selected(self) -> Any | None:
        key = self.selected_key
        return self.rows_by_key.get(key) if key else None
