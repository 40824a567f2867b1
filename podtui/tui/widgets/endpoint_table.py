"""The table of Runpod Serverless endpoints: state, workers now, queue, pools, price, keep-alive."""

from __future__ import annotations

from rich.text import Text

from podtui.display import format_price
from podtui.services.front import WORKER_STATES, EndpointRow
from podtui.tui.widgets.keyed_table import KeyedTable

ENDPOINT_COLUMNS = ("name", "state", "workers now", "queue", "GPU pools", "$/worker-hr", "workers",
                    "idle", "keep-alive", "model")
ENDPOINT_MAX_WIDTH = {"name": 24, "workers now": 30, "GPU pools": 28, "keep-alive": 20, "model": 48}
STATE_STYLES = {"warm": "bold green", "waking": "cyan", "cold": "yellow", "unhealthy": "bold red",
                "unknown": "dim"}
SCALED_TO_ZERO = "⚠ max workers 0"


def workers_text(row: EndpointRow) -> str:
    """`1 idle, 2 running`; `none` for no worker; `?` when unknown."""
    if not row.workers:
        return "?"
    counts = [f"{row.workers[state]} {state}" for state in WORKER_STATES if row.workers.get(state)]
    return ", ".join(counts) or "none"


def state_text(row: EndpointRow) -> Text:
    if row.scaled_to_zero:   # no job will ever run: more urgent than warm or cold (SERVERLESS.md §3.3)
        return Text(SCALED_TO_ZERO, style="bold red")
    return Text(row.state, style=STATE_STYLES.get(row.state, ""))


def endpoint_cells(row: EndpointRow) -> tuple:
    pools = f"{row.gpu_count}x {'/'.join(row.pools)}" if row.pools else "CPU"
    idle = f"{row.idle_timeout_s}s" if row.idle_timeout_s is not None else "—"
    queue = "?" if row.queue is None else str(row.queue)
    keep = Text(row.keep_warm, style="bold green") if row.keep_warm else Text("off", style="dim")
    return (row.name or row.key, state_text(row), workers_text(row), queue, pools,
            format_price(row.price_per_worker_hr), f"{row.workers_min}–{row.workers_max}", idle, keep,
            row.model or "—")


def endpoints_summary(rows: list[EndpointRow], problems: list[str], busy: dict[str, str]) -> str:
    """The line under the table: counts, what runs now (a wake), warnings, queue diagnoses, problems."""
    warm = sum(row.state == "warm" for row in rows)
    parts = [f"{len(rows)} endpoint{'s' if len(rows) != 1 else ''} · {warm} warm"]
    kept = [row.label for row in rows if row.keep_warm]
    if kept:
        parts.append(f"keep-alive on: {', '.join(kept)}")
    parts.extend(busy.values())
    for row in rows:
        parts.extend(f"⚠ {row.label}: {warning}" for warning in row.warnings)
        if row.diagnosis:
            parts.append(f"⚠ {row.label} queue: {row.diagnosis}")
    parts.extend(f"⚠ {problem}" for problem in problems)
    return "  ·  ".join(parts)


class EndpointTable(KeyedTable):
    """The endpoints: one row per EndpointRow, keyed by the endpoint id."""

    COLUMNS = ENDPOINT_COLUMNS
    MAX_WIDTH = ENDPOINT_MAX_WIDTH

    def cells(self, row: EndpointRow) -> tuple:
        return endpoint_cells(row)

    @property
    def selected(self) -> EndpointRow | None:
        return super().selected
