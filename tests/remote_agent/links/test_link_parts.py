"""The links' parts on their own: cluster.link's params refused with the field named, the backend's
authorized_keys line (installed beside the user's own keys, replaced, removed), the ssh command
line (never -N, pinned keys only), and ssh's real refusal text classified (read from the real
OpenSSH client against a real sshd presenting another key)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from remote_agent.links.authorized import MARK, AuthorizeError, install, key_line
from remote_agent.links.command import naive_command, ssh_command
from remote_agent.links.spec import LinkParamError, parse_links
from remote_agent.links.supervisor import DOWN, REFUSED, classify
from tests.testbed.sshd import SshServer, generate_key, have_sshd

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
LINK = {"name": "b1", "endpoint": "127.0.0.1:60151", "host": "203.0.113.7", "port": 2222, "user": "root",
        "rpc_port": 50052, "host_key_alias": "podtui-rpc-0-b1"}


def params(**link) -> dict:
    return {"links": [{**LINK, **link}], "known_hosts": "podtui-rpc-0-b1 ssh-ed25519 AAAA\n", "private_key": KEY}


@pytest.mark.parametrize("change, words", [
    ({"endpoint": "0.0.0.0:60151"}, "endpoint must be 127.0.0.1:PORT"),
    ({"host": "-oProxyCommand=x"}, "links[0].host"),
    ({"port": 0}, "links[0].port"),
    ({"user": "root; rm"}, "links[0].user"),
    ({"host_key_alias": "other"}, "no pinned key for b1"),
])
def test_link_params_that_cannot_make_a_safe_link_are_refused_naming_the_field(change, words):
    with pytest.raises(LinkParamError) as caught:
        parse_links(params(**change))
    assert words in caught.value.message and caught.value.code == "bad_params"


def test_good_params_give_the_link():
    (link,), _, key = parse_links(params())
    assert link.local_port == 60151 and link.rpc_port == 50052 and key == KEY


def test_the_link_runs_a_remote_command_with_pinned_keys_only(tmp_path):
    (link,), _, _ = parse_links(params())
    argv = ssh_command(link, tmp_path / "k", tmp_path / "kh")
    text = " ".join(argv)
    assert "-N" not in argv and argv[-1] == "cat >/dev/null"
    for option in ("StrictHostKeyChecking=yes", f"UserKnownHostsFile={tmp_path / 'kh'}", "HostKeyAlias=podtui-rpc-0-b1",
                   "ExitOnForwardFailure=yes", "ServerAliveInterval=2", "ServerAliveCountMax=3", "BatchMode=yes"):
        assert option in text
    assert "127.0.0.1:60151:127.0.0.1:50052" in argv
    naive = naive_command(link, tmp_path / "k", tmp_path / "kh")
    assert naive[-3:] == ["-N", "--", "203.0.113.7"] and naive.count("--") == 1


def test_the_cluster_key_line_is_restricted_and_replaces_only_its_own(tmp_path):
    path = tmp_path / "authorized_keys"
    path.write_text("ssh-ed25519 AAAAuserkey me@laptop\n")
    line = key_line("ssh-ed25519 " + "A" * 68 + " podtui-cluster-x", "127.0.0.1", 50052)
    assert line.startswith('restrict,port-forwarding,permitopen="127.0.0.1:50052",command="cat >/dev/null" ')
    install(path, line)
    install(path, line.replace("AAAA", "BBBB"))
    lines = path.read_text().splitlines()
    assert lines[0] == "ssh-ed25519 AAAAuserkey me@laptop" and len(lines) == 2 and lines[1].endswith(MARK)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    install(path, None)
    assert path.read_text().splitlines() == ["ssh-ed25519 AAAAuserkey me@laptop"]
    with pytest.raises(AuthorizeError):
        key_line('ssh-ed25519 AAAA" ,command="sh', "127.0.0.1", 50052)


@pytest.mark.skipif(not have_sshd(), reason="needs openssh-server")
def test_the_real_ssh_refusal_of_a_changed_host_key_is_classified_refused(tmp_path):
    sshd = SshServer(tmp_path / "sshd").start()
    try:
        other = generate_key(tmp_path / "other_host_key")
        known = tmp_path / "known_hosts"
        known.write_text(f"pinned {' '.join(Path(f'{other}.pub').read_text().split()[:2])}\n")
        key = generate_key(tmp_path / "client")
        (link,), _, _ = parse_links({**params(host="127.0.0.1", port=sshd.port, host_key_alias="pinned"),
                                     "known_hosts": "pinned x y\n"})
        out = subprocess.run(ssh_command(link, key, known), stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=20, check=False)
        assert out.returncode == 255
        state, sentence = classify(out.stderr)
        assert state == REFUSED and "nothing was sent" in sentence
        assert "Accepted publickey" not in sshd.log_text()
        assert classify("ssh: connect to host 127.0.0.1 port 1: Connection refused\n")[0] == DOWN
    finally:
        sshd.stop()


def test_cluster_link_takes_one_budget_per_rpc_device_at_least_one_per_link():
    from remote_agent.links.methods import LinkParamError, _budgets
    assert _budgets([200, 90, 300], 2) == [200, 90, 300]   # a backend lending two devices, then one lending one
    assert _budgets(None, 2) is None
    for bad in ([200], [200, 0], [200, True], "200,90"):
        with pytest.raises(LinkParamError, match="at least 2 positive integers, MiB per RPC device"):
            _budgets(bad, 2)
