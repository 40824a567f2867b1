"""Logging in the way OpenSSH does, with a real ssh-agent and keys protected by a passphrase.

The everyday setup: `~/.ssh/id_ed25519` has a passphrase and `ssh-add` put it in the agent.
paramiko 5.1 raises TypeError for such a file; podtui must sign with the agent's copy, ask on a
terminal, or say how to fix it, and never print a traceback.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from podtui.errors import CannotConnect
from podtui.ssh.connection import ConnectOptions, SshConnection
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.target import parse_ssh_target
from podtui.ssh.trust import HostKeyPolicy
from tests.testbed.cli import run_podtui, start_tunnel
from tests.testbed.sshd import SshServer, generate_key, have_sshd
from tests.testbed.ssh_agent import SshAgent, encrypt

pytestmark = [pytest.mark.skipif(not have_sshd() or not shutil.which("ssh-agent"),
                                 reason="needs openssh-server and ssh-agent"),
              pytest.mark.timeout(120)]

PASSPHRASE = "correct horse"


@pytest.fixture
def agent(tmp_path):
    agent = SshAgent(tmp_path / "agent").start()
    yield agent
    agent.stop()


@pytest.fixture
def home(tmp_path) -> Path:
    """An empty HOME, so the machine's own ~/.ssh keys never take part."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    return home


def _env(podtui_env: dict, home: Path, agent: SshAgent | None = None) -> dict:
    return {**podtui_env, "HOME": str(home), **(agent.env if agent else {"SSH_AUTH_SOCK": ""})}


def _tunnel_args(sshd: SshServer, upstream) -> list[str]:
    return [f"ssh://root@127.0.0.1:{sshd.port}", "-L", f"0:127.0.0.1:{upstream.port}",
            "--fingerprint", sshd.host_fingerprint]


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text and "TypeError" not in text, text


def test_encrypted_identity_given_with_i_signs_with_the_agent_copy(
        sshd, agent, home, tmp_path, podtui_env, upstream, tunnels):
    key = generate_key(tmp_path / "id_pass")
    sshd.authorize(Path(f"{key}.pub"))
    agent.add(key)
    encrypt(key, PASSPHRASE)
    tunnel = start_tunnel(_env(podtui_env, home, agent), *_tunnel_args(sshd, upstream), "-i", str(key))
    tunnels.append(tunnel)
    assert tunnel.info["state"] == "up"
    _no_traceback(tunnel.stderr_text())


def test_encrypted_default_key_is_skipped_when_the_agent_holds_it(
        sshd, agent, home, podtui_env, upstream, tunnels):
    key = generate_key(home / ".ssh" / "id_ed25519")
    sshd.authorize(Path(f"{key}.pub"))
    agent.add(key)
    encrypt(key, PASSPHRASE)
    tunnel = start_tunnel(_env(podtui_env, home, agent), *_tunnel_args(sshd, upstream))
    tunnels.append(tunnel)
    assert tunnel.info["state"] == "up"
    assert "Authentication (publickey) successful" not in tunnel.stderr_text()   # paramiko's log stays in the file
    _no_traceback(tunnel.stderr_text())


def test_encrypted_identity_without_agent_or_terminal_exits_4_saying_ssh_add(
        sshd, home, tmp_path, podtui_env, upstream):
    key = encrypt(generate_key(tmp_path / "id_pass"), PASSPHRASE)
    sshd.authorize(Path(f"{key}.pub"))
    out = run_podtui(_env(podtui_env, home), "tunnel", *_tunnel_args(sshd, upstream), "-i", str(key))
    assert out.returncode == 4, out.stderr
    assert f"identity {key} is protected by a passphrase" in out.stderr
    assert f"ssh-add {key}" in out.stderr
    _no_traceback(out.stderr)


def test_encrypted_default_key_without_agent_is_named_when_login_fails(
        sshd, home, podtui_env, upstream):
    key = encrypt(generate_key(home / ".ssh" / "id_ed25519"), PASSPHRASE)
    sshd.authorize(Path(f"{key}.pub"))
    out = run_podtui(_env(podtui_env, home), "tunnel", *_tunnel_args(sshd, upstream))
    assert out.returncode == 4, out.stderr
    assert str(key) in out.stderr and "protected by a passphrase" in out.stderr and "ssh-add" in out.stderr
    _no_traceback(out.stderr)


def _connection(sshd: SshServer, tmp_path: Path, **options) -> SshConnection:
    target = parse_ssh_target(f"root@127.0.0.1:{sshd.port}")
    policy = HostKeyPolicy(KnownHosts(tmp_path / "known_hosts"), target.alias, target.label,
                           fingerprints=(sshd.host_fingerprint,))
    return SshConnection(target, policy, ConnectOptions(use_agent=False, **options))


def test_a_passphrase_asked_on_the_terminal_unlocks_the_key(sshd, tmp_path, home):
    key = encrypt(generate_key(tmp_path / "id_pass"), PASSPHRASE)
    sshd.authorize(Path(f"{key}.pub"))
    asked: list[str] = []
    answers = iter(["wrong", PASSPHRASE])

    def ask(path: str) -> str:
        asked.append(path)
        return next(answers)

    with _connection(sshd, tmp_path, identity=key, ask_passphrase=ask,
                     default_key_dir=home / ".ssh") as connection:
        assert connection.is_active()
    assert asked == [str(key), str(key)]


def test_three_wrong_passphrases_give_a_clear_error(sshd, tmp_path, home):
    key = encrypt(generate_key(tmp_path / "id_pass"), PASSPHRASE)
    sshd.authorize(Path(f"{key}.pub"))
    connection = _connection(sshd, tmp_path, identity=key, ask_passphrase=lambda path: "wrong",
                             default_key_dir=home / ".ssh")
    with pytest.raises(CannotConnect) as caught:
        connection.connect()
    assert caught.value.title == f"no correct passphrase for identity {key}"
    assert "ssh-add" in caught.value.fix


def test_too_many_authentication_failures_names_the_cause_and_the_keys(
        tmp_path, client_key, agent, home, podtui_env, upstream):
    sshd = SshServer(tmp_path / "sshd", extra_config="MaxAuthTries 3")
    right = generate_key(home / ".ssh" / "id_ed25519")
    sshd.authorize(Path(f"{right}.pub"))
    wrong = [generate_key(tmp_path / f"wrong{i}", comment=f"wrong-key-{i}") for i in range(5)]
    for key in wrong:
        agent.add(key)
    sshd.start()
    try:
        out = run_podtui(_env(podtui_env, home, agent), "tunnel", *_tunnel_args(sshd, upstream))
    finally:
        sshd.stop()
    assert out.returncode == 4, out.stderr
    assert "Too many authentication failures" in out.stderr and "MaxAuthTries" in out.stderr
    assert "wrong-key-0" in out.stderr                # the keys offered are listed
    assert "-i" in out.stderr.split("fix:", 1)[1]     # and the fix says to pick one with -i
    assert "No existing session" not in out.stderr
    _no_traceback(out.stderr)
