"""Fixtures for the agent's tests: a real daemon subprocess, on the real llama-server or a stand-in."""

from __future__ import annotations

import pytest

from tests.testbed.agent_daemon import DaemonProcess, standin_bin_dir


@pytest.fixture
def make_daemon(tmp_path):
    started: list[DaemonProcess] = []

    def make(bin_dir, env=None, args=None, root=None, port=None) -> DaemonProcess:
        root = root or tmp_path / f"daemon{len(started)}"
        root.mkdir(parents=True, exist_ok=True)
        daemon = DaemonProcess(root, bin_dir, env=env or {}, args=args or [])
        if port is not None:
            daemon.port = port
        started.append(daemon)
        return daemon.start()

    yield make
    for daemon in started:
        daemon.stop()


@pytest.fixture
def standin_bin(tmp_path):
    return standin_bin_dir(tmp_path / "standin-bin")
