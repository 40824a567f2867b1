"""Fixtures for the context-fit tests: long-context tiny models and the stand-in's calibration."""

from __future__ import annotations

import pytest

from remote_agent.fit.estimate import RunConfig
from tests.fit.standin import FIT_LARGE, FIT_SMALL, calibrate_overhead, fit_model


@pytest.fixture(scope="session")
def fit_small_model():
    return fit_model(FIT_SMALL)


@pytest.fixture(scope="session")
def fit_large_model():
    return fit_model(FIT_LARGE)


@pytest.fixture(scope="session")
def fitp_bin(llama_bin):
    return llama_bin / "llama-fit-params"


@pytest.fixture(scope="session")
def standin_overhead(llama_bin, tiny_model):
    """The stand-in engine's overhead, measured on tiny-a (not the models the searches run on)."""
    return calibrate_overhead(llama_bin, tiny_model, RunConfig(token_embd_on_device=True))
