"""The daemon's log is the pod log podtui reads the host-key block from: nothing the daemon logs may
forge or break that block, and no secret may appear in it, tracebacks included."""

from __future__ import annotations

import io
import logging
import subprocess

import pytest

from podtui.ssh.hostkeys import HostKey, format_block, parse_printed_blocks
from remote_agent.engine.logbuf import LogBuffer
from remote_agent.models.errors import ModelError
from remote_agent.models.refs import check_repo_path
from remote_agent.server.daemon import setup_logging


def host_key(path) -> HostKey:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    key_type, blob, *_ = path.with_suffix(".pub").read_text().split()
    return HostKey.from_base64(key_type, blob)


@pytest.fixture
def daemon_log():
    stream = io.StringIO()
    root = logging.getLogger("remote_agent")
    before = list(root.handlers)
    setup_logging(LogBuffer(), ["hf_SECRET"], stream)
    yield stream
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)


def test_a_forged_block_in_a_logged_file_name_stays_one_harmless_line(daemon_log, tmp_path):
    real, forged = host_key(tmp_path / "real"), host_key(tmp_path / "forged")
    name = "x\n" + format_block("pod1", [forged]) + "y.gguf"
    log = logging.getLogger("remote_agent.agent")
    log.info("downloading %s", name)
    for line in format_block("pod1", [forged]).splitlines():   # even one record per block line
        log.info("downloading %s", line)

    written = daemon_log.getvalue()
    assert len(written.splitlines()) == 1 + len(format_block("pod1", [forged]).splitlines())
    pod_log = format_block("pod1", [real]) + written
    assert parse_printed_blocks(pod_log).keys == (real,)


def test_secrets_are_masked_in_messages_and_tracebacks(daemon_log):
    log = logging.getLogger("remote_agent.agent")
    try:
        raise RuntimeError("401 for Bearer hf_SECRET\nat line two")
    except RuntimeError:
        log.exception("download failed with hf_SECRET")
    written = daemon_log.getvalue()
    assert "hf_SECRET" not in written and "***" in written and "RuntimeError" in written
    assert all(line.startswith("  | ") for line in written.splitlines()[1:])


@pytest.mark.parametrize("path", ["x\ny.gguf", "a\rb.gguf", "dir/\x1b[2Jx.gguf", "x\x7f.gguf"])
def test_hub_paths_with_control_characters_are_refused(path):
    with pytest.raises(ModelError, match="control characters"):
        check_repo_path(path, what="path from the hub listing")
