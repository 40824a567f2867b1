"""Fixtures that own real processes (sshd, llama-server), each stopped by its own PID."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.testbed import cache, models
from tests.testbed.fit_standin import FIT_LARGE, FIT_SMALL, fit_model
from tests.testbed.koboldcpp import KoboldcppNotBuilt, koboldcpp_binary
from tests.testbed.llama import LlamaServer
from tests.testbed.sshd import SshServer, generate_key

# A suite started in the background by a script (`… &`) inherits SIGINT as ignored, and so would
# every podtui it starts: the Ctrl-C tests would wait forever. A handled signal is reset to the
# default in children, so handling it here gives them Python's usual KeyboardInterrupt back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def llama_bin() -> Path:
    """Directory with the CPU llama-server, ggml-rpc-server and llama-fit-params."""
    return cache.llama_bin_dir()


@pytest.fixture(scope="session")
def koboldcpp_bin() -> Path:
    """The CPU koboldcpp's `koboldcpp` wrapper; skips when scripts/build-koboldcpp.sh has not run."""
    try:
        return koboldcpp_binary()
    except KoboldcppNotBuilt as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return models.ensure_model(models.TINY_A)


@pytest.fixture(scope="session")
def tiny_model_b() -> Path:
    return models.ensure_model(models.TINY_B)


@pytest.fixture(scope="session")
def tiny_split_model() -> Path:
    """First part of a model split into three GGUF files."""
    return models.ensure_model(models.TINY_SPLIT)


@pytest.fixture(scope="session")
def fit_small_model():
    """A tiny model with a long trained context, for context-fit searches."""
    return fit_model(FIT_SMALL)


@pytest.fixture(scope="session")
def fit_large_model():
    """Like fit_small_model, larger: a search on it meets the memory limit."""
    return fit_model(FIT_LARGE)


@pytest.fixture(scope="session")
def fitp_bin(llama_bin):
    """llama-fit-params from the CPU build."""
    return llama_bin / "llama-fit-params"


@pytest.fixture(scope="session")
def client_key(tmp_path_factory) -> Path:
    """An ed25519 client identity (private key path; the .pub sits beside it)."""
    return generate_key(tmp_path_factory.mktemp("client") / "id_ed25519", comment="podtui-test-client")


@pytest.fixture
def sshd(tmp_path, client_key):
    """A private sshd on 127.0.0.1:<free port> that accepts client_key."""
    server = SshServer(tmp_path / "sshd")
    server.authorize(Path(f"{client_key}.pub"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def llama_server(llama_bin, tiny_model, tmp_path_factory):
    """A running llama-server on the tiny model (shared by a test module)."""
    server = LlamaServer(llama_bin, tiny_model, log_path=tmp_path_factory.mktemp("llama") / "llama.log")
    server.start()
    yield server
    server.stop()
