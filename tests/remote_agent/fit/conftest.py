"""Fixtures for the context-fit tests: the stand-in's calibration. The long-context models and
llama-fit-params are in tests/conftest.py (the client's pre-flight tests use them too)."""

from __future__ import annotations

import pytest

from remote_agent.fit.estimate import RunConfig
from tests.testbed.fit_standin import calibrate_overhead


@pytest.fixture(scope="session")
def standin_overhead(llama_bin, tiny_model):
    """The stand-in engine's overhead, measured on tiny-a (not the models the searches run on)."""
    return calibrate_overhead(llama_bin, tiny_model, RunConfig(token_embd_on_device=True))
