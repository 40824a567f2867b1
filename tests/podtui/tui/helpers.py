"""Small helpers shared by the TUI tests."""

from __future__ import annotations


def shown(screen, screen_class) -> bool:
    """The screen is on top AND composed: pushing a screen returns before its children mount."""
    return isinstance(screen, screen_class) and screen.is_mounted and bool(screen.query("Button"))
