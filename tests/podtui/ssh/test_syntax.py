"""OpenSSH -L syntax and TARGET forms."""

from __future__ import annotations

import pytest

from podtui.errors import UsageProblem
from podtui.ssh.forwards import ForwardSpec, parse_forward
from podtui.ssh.target import parse_ssh_target, resolve_target


@pytest.mark.parametrize("spec, expected", [
    ("5002", ForwardSpec("127.0.0.1", 5002, "127.0.0.1", 5002)),
    ("8080:5002", ForwardSpec("127.0.0.1", 8080, "127.0.0.1", 5002)),
    ("8080:localhost:80", ForwardSpec("127.0.0.1", 8080, "localhost", 80)),
    ("0.0.0.0:8080:10.0.0.2:80", ForwardSpec("0.0.0.0", 8080, "10.0.0.2", 80)),
    ("*:8080:db:5432", ForwardSpec("0.0.0.0", 8080, "db", 5432)),
    ("8080:[::1]:80", ForwardSpec("127.0.0.1", 8080, "::1", 80)),
    ("[::1]:8080:[fe80::1]:80", ForwardSpec("::1", 8080, "fe80::1", 80)),
    ("0:127.0.0.1:5002", ForwardSpec("127.0.0.1", 0, "127.0.0.1", 5002)),
])
def test_forward_syntax(spec, expected):
    assert parse_forward(spec) == expected


@pytest.mark.parametrize("spec", ["", "abc", "70000", "1:2:3:4:5", "8080:host:0", "8080::80", "x:host:80"])
def test_bad_forward_syntax_is_a_usage_error(spec):
    with pytest.raises(UsageProblem) as info:
        parse_forward(spec)
    assert info.value.exit_code == 2 and "-L" in info.value.title


def test_ssh_targets_and_known_hosts_names():
    t = parse_ssh_target("ssh://alice@example.org:2222")
    assert (t.user, t.host, t.port, t.alias) == ("alice", "example.org", 2222, "[example.org]:2222")
    t = parse_ssh_target("root@10.1.2.3")
    assert (t.port, t.alias) == (22, "10.1.2.3")
    t = parse_ssh_target("[::1]:2200", user="bob")
    assert (t.host, t.user, t.alias) == ("::1", "bob", "[::1]:2200")


def test_target_errors_name_the_problem():
    with pytest.raises(UsageProblem, match="nor an SSH host"):
        resolve_target("not a host!")
    with pytest.raises(UsageProblem, match="--user"):
        resolve_target("alice@h", user="bob")


def test_pod_resolver_seam_gets_the_first_say_for_bare_names():
    from podtui.ssh.target import SshTarget, pod_alias

    def pods(text, user):
        return SshTarget("203.0.113.7", 40022, user or "root", pod_alias(text), text, pod_id=text) \
            if text == "abc123" else None

    assert resolve_target("abc123", pod_resolver=pods).alias == "podtui-abc123"
    assert resolve_target("ssh://abc123", pod_resolver=pods).alias == "abc123"
    assert resolve_target("myhost:2222", pod_resolver=pods).alias == "[myhost]:2222"
