"""Fixtures of podtui's tests: podtui's config and state in a temp dir, the Runpod double,
tunnels stopped by their own PID, a counting upstream."""

from __future__ import annotations

import os

import pytest

from tests.testbed.cli import CountingUpstream, RunningTunnel
from tests.testbed.procs import stop_process
from tests.testbed.runpod_double import SPEC_PATH, RunpodDouble
from tests.testbed.runpod_provider import API_KEY, TEST_IMAGE, make_provider


@pytest.fixture
def podtui_env(tmp_path) -> dict:
    """Environment with podtui's config (and so its known_hosts) in a temp dir."""
    return {**os.environ, "PODTUI_CONFIG_DIR": str(tmp_path / "podtui-config"),
            "PODTUI_STATE_DIR": str(tmp_path / "podtui-state"), "SSH_AUTH_SOCK": ""}


@pytest.fixture
def runpod_double():
    if not SPEC_PATH.exists():
        pytest.skip(f"the Runpod REST v2 spec is not at {SPEC_PATH} (set RUNPOD_OPENAPI_SPEC)")
    double = RunpodDouble(API_KEY).start()
    yield double
    double.stop()
    assert double.response_violations == [], "the double sent bodies that break the spec"


@pytest.fixture
def provider(runpod_double):
    provider = make_provider(runpod_double)
    yield provider
    provider.api.close()


@pytest.fixture
def runpod_env(tmp_path, runpod_double) -> dict:
    """The real `podtui` entry point's environment: config in tmp, API at the double, fast waits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "PODTUI_"))}
    env.update({"PODTUI_CONFIG_DIR": str(tmp_path / "podtui-config"),
                "PODTUI_STATE_DIR": str(tmp_path / "podtui-state"), "HOME": str(tmp_path / "home"),
                "RUNPOD_API_KEY": API_KEY, "PODTUI_RUNPOD_API_URL": runpod_double.url,
                "PODTUI_IMAGE": TEST_IMAGE, "PODTUI_POLL_S": "0.1",
                "PODTUI_RUNPOD_LOG_QUIET_S": "0.4", "PODTUI_RUNPOD_BACKOFF_S": "0.01", "SSH_AUTH_SOCK": ""})
    return env


@pytest.fixture
def tunnels():
    """Stops every tunnel a test started, by its own PID."""
    started: list[RunningTunnel] = []
    yield started
    for tunnel in started:
        stop_process(tunnel.proc)


@pytest.fixture
def upstream():
    server = CountingUpstream()
    yield server
    server.close()
