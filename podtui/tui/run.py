"""Start the TUI. Kept apart from app.py so the CLI imports textual only when it is needed."""

from __future__ import annotations


def run_tui() -> int:
    from podtui.tui.app import build_app

    build_app().run()
    return 0
