"""A RunpodProvider pointed at the loopback Runpod REST v2 double (tests/testbed/runpod_double.py)."""

from __future__ import annotations

import time

from podtui.providers.runpod import RunpodProvider
from podtui.providers.runpod_api import ApiKey, RetryPolicy, RunpodApi
from tests.testbed.runpod_double import RunpodDouble

API_KEY = "rpa_TESTKEY_d0n7-l34k-m3_9f8e7d6c5b4a"
TEST_IMAGE = "ghcr.io/example/podtui-pod:0.1.0"


def make_provider(double: RunpodDouble, key: str = API_KEY, *, timeout_s: float = 5.0,
                  max_retries: int = 3, waits: list | None = None) -> RunpodProvider:
    """A provider with fast retries; every backoff it asks for is appended to `waits`."""
    waits = waits if waits is not None else []
    api = RunpodApi(ApiKey(key, "test"), double.url, timeout_s=timeout_s,
                    retry=RetryPolicy(max_retries=max_retries, backoff_s=0.01, max_backoff_s=0.05,
                                      max_retry_after_s=2.0),
                    sleep=lambda s: (waits.append(s), time.sleep(min(s, 0.05)))[1])
    return RunpodProvider(api, image=TEST_IMAGE, log_quiet_s=0.4)
