"""How podtui writes a price and a duration, for the CLI's tables and the TUI alike (one rule).

`missing` is what an unknown value shows as: the TUI's cells use "—", the CLI's plain tables "-"
like their other empty columns.
"""

from __future__ import annotations


def format_price(per_hr: float | None, missing: str = "—") -> str:
    """US dollars per hour: 0.69 → `$0.69`."""
    return missing if per_hr is None else f"${per_hr:.2f}"


def format_uptime(seconds: float | None, missing: str = "—") -> str:
    """`45s` under a minute, `12m` under an hour, `5h07m` under two days, then `3d04h`."""
    if seconds is None:
        return missing
    if seconds < 60:
        return f"{int(seconds)}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"
