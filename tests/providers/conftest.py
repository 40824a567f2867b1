"""Fixtures for the provider tests: the Runpod REST v2 double and a provider pointed at it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from podtui.providers.runpod import RunpodProvider
from podtui.providers.runpod_api import ApiKey, RetryPolicy, RunpodApi
from tests.testbed.runpod_double import SPEC_PATH, RunpodDouble

API_KEY = "rpa_TESTKEY_d0n7-l34k-m3_9f8e7d6c5b4a"
PODTUI = str(Path(sys.executable).parent / "podtui")


@pytest.fixture
def runpod_double():
    if not SPEC_PATH.exists():
        pytest.skip(f"the Runpod REST v2 spec is not at {SPEC_PATH} (set RUNPOD_OPENAPI_SPEC)")
    double = RunpodDouble(API_KEY).start()
    yield double
    double.stop()
    assert double.response_violations == [], "the double sent bodies that break the spec"


def make_provider(double: RunpodDouble, key: str = API_KEY, *, timeout_s: float = 5.0,
                  max_retries: int = 3, waits: list | None = None) -> RunpodProvider:
    waits = waits if waits is not None else []
    api = RunpodApi(ApiKey(key, "test"), double.url, timeout_s=timeout_s,
                    retry=RetryPolicy(max_retries=max_retries, backoff_s=0.01, max_backoff_s=0.05,
                                      max_retry_after_s=2.0),
                    sleep=lambda s: (waits.append(s), __import__("time").sleep(min(s, 0.05)))[1])
    return RunpodProvider(api, image="ghcr.io/example/podtui-pod:0.1.0", log_quiet_s=0.4)


@pytest.fixture
def provider(runpod_double):
    provider = make_provider(runpod_double)
    yield provider
    provider.api.close()


@pytest.fixture
def podtui_env(tmp_path, runpod_double) -> dict:
    """The real `podtui` entry point's environment: config in tmp, API at the double, fast waits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "PODTUI_"))}
    env.update({"PODTUI_CONFIG_DIR": str(tmp_path / "podtui-config"),
                "PODTUI_STATE_DIR": str(tmp_path / "podtui-state"), "HOME": str(tmp_path / "home"),
                "RUNPOD_API_KEY": API_KEY, "PODTUI_RUNPOD_API_URL": runpod_double.url,
                "PODTUI_IMAGE": "ghcr.io/example/podtui-pod:0.1.0", "PODTUI_POLL_S": "0.1",
                "PODTUI_RUNPOD_LOG_QUIET_S": "0.4", "PODTUI_RUNPOD_BACKOFF_S": "0.01", "SSH_AUTH_SOCK": ""})
    return env


def run_podtui(env: dict, *args: str, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PODTUI, *args], env=env, input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)
