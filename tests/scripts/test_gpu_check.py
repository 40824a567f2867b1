"""scripts/gpu-check.sh on a machine without a GPU (CI, the 2-core test bed): it explains itself,
and it refuses at once, saying where it must run, instead of building for minutes first."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu-check.sh"
NO_GPU = "this script needs an NVIDIA GPU; run it on the device machine"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=30,
                          check=False, env={**os.environ, **(env or {})})


def test_help_says_what_it_does_and_how_to_prepare_the_device():
    out = run("--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: scripts/gpu-check.sh")
    for words in ("fit.search", "-DGGML_CUDA=ON", "ballast", "--pack", "--model", "$OUT/gpu-check.json"):
        assert words in out.stdout


def test_without_nvidia_smi_it_stops_at_once_with_the_reason(tmp_path):
    started = time.monotonic()
    out = run(env={"NVIDIA_SMI": str(tmp_path / "no-such-nvidia-smi"), "OUT": str(tmp_path / "out")})
    assert out.returncode != 0
    assert NO_GPU in out.stderr and "no nvidia-smi" in out.stderr
    assert time.monotonic() - started < 10
    summary = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert summary["ok"] is False and NO_GPU in summary["error"]
    assert not (tmp_path / "out" / "gpu-check-logs").exists()  # nothing was built or started


def test_an_nvidia_smi_that_finds_no_gpu_is_reported_with_its_own_words(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the "
                    "NVIDIA driver.\"\nexit 9\n")
    fake.chmod(0o755)
    out = run(env={"NVIDIA_SMI": str(fake)})
    assert out.returncode != 0
    assert NO_GPU in out.stderr and "couldn't communicate with the NVIDIA driver" in out.stderr


def test_a_bad_option_is_refused_before_anything_runs():
    out = run("--leave-mib", "lots")
    assert out.returncode != 0 and "not a whole number" in out.stderr
    out = run("--no-such-option")
    assert out.returncode == 2 and "unknown option --no-such-option" in out.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_finds_nothing():
    out = subprocess.run(["shellcheck", str(SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout
