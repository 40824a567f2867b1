"""The main table of pods: one row per pod from every provider, kept on the same pod across
refreshes and filtered by `/`; an RPC cluster shows as one group of rows (widgets/cluster_rows.py)."""

from __future__ import annotations

from rich.text import Text

from podtui.display import format_price, format_uptime
from podtui.services.front import ClusterRow, PodRow
from podtui.tui.widgets.cluster_rows import MemberRow, cluster_cells, group_matches, member_cells
from podtui.tui.widgets.keyed_table import KeyedTable

POD_COLUMNS = ("name", "provider", "status", "GPU", "$/hr", "uptime", "model", "ctx", "engine",
               "tunnel")
POD_MAX_WIDTH = {"model": 48, "tunnel": 26, "name": 24, "status": 28, "engine": 28}
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


class PodTable(KeyedTable):
    """The pods: one row per PodRow, keyed by PodRow.key; a cluster's group (a ClusterRow, then a
    MemberRow per member) where the rows given to show() hold one (cluster_rows.grouped_rows)."""

    COLUMNS = POD_COLUMNS
    MAX_WIDTH = POD_MAX_WIDTH

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pods: list[PodRow] = []   # every listed pod, for a cluster row's totals

    def cells(self, row) -> tuple:
        if isinstance(row, ClusterRow):
            return cluster_cells(row, self.pods)
        if isinstance(row, MemberRow):
            return member_cells(row, row_cells(row.pod) if row.pod is not None else None)
        return row_cells(row)

    def matches(self, row, text: str) -> bool:
        if isinstance(row, ClusterRow):
            return group_matches(row, text)
        if isinstance(row, MemberRow):
            return group_matches(row.cluster, text)
        return row_matches(row, text)

    @property
    def selected(self) -> PodRow | ClusterRow | MemberRow | None:
        return super().selected
