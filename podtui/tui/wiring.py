"""Builds the real TuiServices from podtui's configured providers and services.

Until the providers (issue #6) and the SSH/agent parts (#3, #4) land, the base TuiServices is
returned: the main screen opens, says what is missing, and every action explains it is not wired.
"""

from __future__ import annotations

from podtui.tui.services import TuiServices


def default_services() -> TuiServices:
    return TuiServices()
