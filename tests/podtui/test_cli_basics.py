"""The entry points install and answer; verbs that are not built yet say so and exit non-zero."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=60, env=env)


def test_podtui_help_lists_the_verbs():
    out = run(str(BIN / "podtui"), "--help")
    assert out.returncode == 0
    for verb in ("tunnel", "hostkey", "agent", "pods", "launch", "locate"):
        assert verb in out.stdout
    assert "Exit codes" in out.stdout


def test_remote_agent_help_lists_its_commands():
    out = run(str(BIN / "remote-agent"), "--help")
    assert out.returncode == 0
    for command in ("boot", "daemon", "rpc"):
        assert command in out.stdout


def test_locate_prints_paths_under_the_config_override(tmp_path, monkeypatch):
    import os

    env = {**os.environ, "PODTUI_CONFIG_DIR": str(tmp_path / "cfg")}
    out = run(str(BIN / "podtui"), "locate", "--json", env=env)
    assert out.returncode == 0, out.stderr
    locations = json.loads(out.stdout)
    assert locations["known_hosts"] == str(tmp_path / "cfg" / "known_hosts")


def test_a_verbs_help_after_the_agent_target_is_the_verbs_own():
    """The agent group takes its options anywhere, but `--help` after a verb belongs to the verb
    (and needs no connection: TARGET here resolves to nothing)."""
    out = run(str(BIN / "podtui"), "agent", "no-such-host", "swap", "--help")
    assert out.returncode == 0, out.stderr
    assert "agent TARGET swap" in out.stdout and "--ctx" in out.stdout
    out = run(str(BIN / "podtui"), "agent", "no-such-host", "--help")
    assert out.returncode == 0 and "COMMAND [ARGS]" in out.stdout and "swap" in out.stdout
