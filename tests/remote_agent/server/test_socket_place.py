"""The agent's socket must sit where no other user can swap it for an impostor (which would read
every request podtui sends): the daemon refuses such a folder, the bridge such a folder or socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from remote_agent.paths import UnsafeSocketPlace, check_socket_place

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def run_agent(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "remote_agent", *args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30,
                          env={**os.environ, "MODEL": "", **(env_extra or {})})


def test_a_folder_others_may_write_into_is_refused(tmp_path):
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(UnsafeSocketPlace, match="writable by other users"):
        check_socket_place(folder / "agent.sock")
    folder.chmod(0o1777)  # sticky, like /tmp: others cannot replace our files
    check_socket_place(folder / "agent.sock")


@needs_root
def test_the_daemon_refuses_a_folder_another_user_owns(tmp_path):
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o755)
    os.chown(folder, NOBODY, NOBODY)
    out = run_agent("daemon", "--socket", str(folder / "agent.sock"), "--state-dir", str(tmp_path / "s"),
                    "--models-dir", str(tmp_path / "m"), "--no-autostart")
    assert out.returncode != 0
    assert "belongs to another user" in out.stderr and "--socket" in out.stderr
    assert not (folder / "agent.sock").exists()


@needs_root
def test_the_bridge_refuses_a_socket_another_user_owns(tmp_path):
    path = tmp_path / "agent.sock"
    impostor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    impostor.bind(str(path))
    impostor.listen(1)
    os.chown(path, NOBODY, NOBODY)
    try:
        out = run_agent("rpc", "--socket", str(path))
    finally:
        impostor.close()
    assert out.returncode == 1
    assert "refusing to connect" in out.stderr and "belongs to another user" in out.stderr
