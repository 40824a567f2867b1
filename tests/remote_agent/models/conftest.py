"""A loopback double of the Hugging Face hub (tests/testbed/hf_double.py) serving the test bed's
real tiny GGUF files, reached by the real huggingface_hub client through HF_ENDPOINT."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from remote_agent.models import store
from tests.testbed.hf_double import HubDouble

GRANTED_TOKEN = "hf_testTOKENvalue0123456789abcdef"  # a made-up token the double accepts


@pytest.fixture
def hub(monkeypatch, tiny_model, tiny_model_b, tiny_split_model):
    parts = store.split_parts(tiny_split_model)
    double = HubDouble(granted_tokens={GRANTED_TOKEN}).start()
    double.add_repo("org/tiny-GGUF", {
        "README.md": b"# tiny\n",
        "config.json": b"{}",
        "mmproj-tiny-F16.gguf": tiny_model_b,  # a projector: never picked as the model
        "tiny.Q4_K_M.gguf": tiny_model,
        "tiny.Q8_0.gguf": tiny_model_b,
        "sub/b-model.gguf": tiny_model_b,
        "sub/a-model.Q4_K_M.gguf": tiny_model,
        **{f"split/tiny-{i:05d}-of-00003.gguf": p for i, p in enumerate(parts, 1)},
        **{f"Q6_K/tiny-Q6_K-{i:05d}-of-00003.gguf": p for i, p in enumerate(parts, 1)},
    })
    double.add_repo("org/gated-GGUF", {"gated.Q4_K_M.gguf": tiny_model}, gated=True)
    double.add_repo("org/safetensors-only", {"model.safetensors": b"\0" * 20000, "config.json": b"{}"})
    monkeypatch.setenv("HF_ENDPOINT", double.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield double
    double.stop()


@pytest.fixture
def models_dir(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    return d


def body_gets(hub, fragment: str = "/cdn/") -> list:
    """The requests that fetched file bytes (GETs of the CDN blobs)."""
    return [r for r in hub.requests if r.method == "GET" and fragment in r.path]


@pytest.fixture
def small_volume(tmp_path):
    """`small_volume("2m")` mounts a real tmpfs of that size and returns its mount point; it is
    unmounted after the test. Skips when this machine does not let the test mount one."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        target = tmp_path / f"volume-{len(mounted)}"
        target.mkdir()
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("a real full disk needs a small tmpfs, and mounting one needs root and mount(8); "
                        "not available here")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(target)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"mounting a {size} tmpfs was not permitted here ({done.stderr.strip()}); the real "
                        "full-disk tests need one")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        if subprocess.run(["umount", str(target)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)
