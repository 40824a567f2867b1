"""Fixtures of the TUI tests: podtui's state and config go to a temporary directory."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def podtui_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("PODTUI_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PODTUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    return tmp_path
