"""Where the test bed keeps what is expensive to make: outside the repo, keyed by version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LLAMA_CPP_PYTHON_VERSION = "0.3.36"


def cache_root() -> Path:
    override = os.environ.get("PODTUI_TESTBED_CACHE")
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(override) if override else base / "podtui-testbed"


def llama_root() -> Path:
    return cache_root() / f"llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}"


def llama_bin_dir() -> Path:
    """The CPU build of llama-server & co; builds it (about 7 minutes) when a binary is missing."""
    out = subprocess.run(
        [str(REPO / "scripts" / "build-llama-server.sh")],
        check=True, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "LLAMA_CPP_PYTHON_VERSION": LLAMA_CPP_PYTHON_VERSION, "PYTHON": sys.executable},
    ).stdout
    return Path(out.strip().splitlines()[-1])


def vocab_gguf() -> Path:
    """llama.cpp's vocab-only model with the 32,000-token llama SPM tokenizer."""
    return llama_root() / "src" / "vendor" / "llama.cpp" / "models" / "ggml-vocab-llama-spm.gguf"
