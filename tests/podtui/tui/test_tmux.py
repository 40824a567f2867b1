"""`podtui` in a real terminal (tmux, 160×48): opens, navigates, shows its own log, quits cleanly."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

PODTUI = Path(sys.executable).parent / "podtui"
pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


class Tmux:
    def __init__(self, tmp_path: Path) -> None:
        self.name = f"podtui-test-{uuid.uuid4().hex[:8]}"
        self.socket = str(tmp_path / "tmux.sock")

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], check=True,
                              stdout=subprocess.PIPE, text=True).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name)

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{self.screen()}")

    def wait_gone(self, text: str, timeout: float = 20.0) -> None:
        # An Escape followed at once by another key reads as Alt+key: wait for its effect first.
        deadline = time.monotonic() + timeout
        while text in self.screen():
            assert time.monotonic() < deadline, f"{text!r} never went away:\n{self.screen()}"
            time.sleep(0.1)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.name, *keys)


def test_podtui_opens_navigates_shows_logs_and_quits(tmp_path):
    exit_file = tmp_path / "exit-code"
    env_prefix = (f"PODTUI_STATE_DIR={tmp_path / 'state'} PODTUI_CONFIG_DIR={tmp_path / 'config'} "
                  f"HOME={tmp_path / 'home'} RUNPOD_API_KEY= TERM=xterm-256color")
    tmux = Tmux(tmp_path)
    # The short sleep lets tmux settle the window at 160x48 before podtui reads its size.
    command = f"sleep 0.5; env {env_prefix} {PODTUI}; echo $? > {exit_file}; sleep 30"
    tmux.run("-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "48", "-s", tmux.name,
             command)
    tmux.run("set-option", "-t", tmux.name, "window-size", "manual")
    tmux.run("resize-window", "-t", tmux.name, "-x", "160", "-y", "48")
    try:
        tmux.wait_for("Welcome to podtui")                    # no Runpod key: first run
        tmux.keys("Escape")                                   # carry on without one
        tmux.wait_gone("Welcome to podtui")
        screen = tmux.wait_for("Launch")                       # the footer's keys
        assert "name" in screen and "provider" in screen and "tunnel" in screen
        tmux.wait_for("no Runpod API key is configured")      # says how to add one
        tmux.keys("?")
        tmux.wait_for("Logs screen")
        tmux.keys("Escape")
        tmux.wait_gone("Logs screen")
        tmux.keys("L")
        screen = tmux.wait_for("podtui started")              # its own activity log, live
        assert "podtui's own log" in screen and "FOLLOWING" in screen
        tmux.keys("/")
        tmux.wait_for("!text hides them")
        tmux.keys("-l", "started")
        tmux.wait_for("filter 'started'")
        tmux.keys("Escape")                                   # clears the filter
        tmux.wait_gone("filter 'started'")
        tmux.keys("Escape")                                   # back to the pods
        tmux.wait_for("Launch")
        tmux.keys("q")
        deadline = time.monotonic() + 10
        while not exit_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert exit_file.read_text().strip() == "0"
    finally:
        subprocess.run(["tmux", "-S", tmux.socket, "kill-server"], check=False,
                       stderr=subprocess.DEVNULL)
