"""OpenSSH -L syntax (and how a forward is written back) and TARGET forms."""

from __future__ import annotations

import shutil
import subprocess

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
    (":8080:127.0.0.1:5002", ForwardSpec("0.0.0.0", 8080, "127.0.0.1", 5002)),
    ("[::]:0:127.0.0.1:5002", ForwardSpec("::", 0, "127.0.0.1", 5002)),
    ("localhost:8080:localhost:5002", ForwardSpec("127.0.0.1", 8080, "localhost", 5002)),
])
def test_forward_syntax(spec, expected):
    assert parse_forward(spec) == expected


@pytest.mark.parametrize("spec", ["", "abc", "70000", "1:2:3:4:5", "8080:host:0", "8080::80", "x:host:80"])
def test_bad_forward_syntax_is_a_usage_error(spec):
    with pytest.raises(UsageProblem) as info:
        parse_forward(spec)
    assert info.value.exit_code == 2 and "-L" in info.value.title


def test_unbracketed_ipv6_bind_is_a_usage_error_that_shows_the_brackets():
    with pytest.raises(UsageProblem, match="fields") as info:
        parse_forward("::1:0:127.0.0.1:5002")
    assert "[::1]:" in info.value.fix


@pytest.mark.parametrize("spec, local, openssh, url", [
    ("[::1]:0:127.0.0.1:5002", "[::1]:41000", "[::1]:41000:127.0.0.1:5002", "http://[::1]:41000"),
    ("0:[::1]:5002", "127.0.0.1:41000", "127.0.0.1:41000:[::1]:5002", "http://127.0.0.1:41000"),
    ("[::]:0:[fe80::1]:80", "[::]:41000", "[::]:41000:[fe80::1]:80", "http://[::1]:41000"),
    ("0.0.0.0:0:127.0.0.1:5002", "0.0.0.0:41000", "0.0.0.0:41000:127.0.0.1:5002", "http://127.0.0.1:41000"),
    ("*:0:localhost:5002", "0.0.0.0:41000", "0.0.0.0:41000:localhost:5002", "http://127.0.0.1:41000"),
    ("localhost:0:localhost:5002", "127.0.0.1:41000", "127.0.0.1:41000:localhost:5002", "http://127.0.0.1:41000"),
    ("192.0.2.7:0:10.0.0.2:80", "192.0.2.7:41000", "192.0.2.7:41000:10.0.0.2:80", "http://192.0.2.7:41000"),
])
def test_a_forward_is_written_back_with_ipv6_bracketed_and_a_loopback_url(spec, local, openssh, url):
    forward = parse_forward(spec)
    assert forward.local_address(41000) == local
    assert forward.openssh(41000) == openssh
    assert forward.local_url(41000) == url


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
@pytest.mark.parametrize("spec, parsed_by_ssh", [
    ("[::1]:0:127.0.0.1:5002", "[::1]:41000 [127.0.0.1]:5002"),
    ("[::]:0:[fe80::1]:80", "[::]:41000 [fe80::1]:80"),
    ("0:[::1]:5002", "[127.0.0.1]:41000 [::1]:5002"),
    ("*:0:localhost:5002", "[0.0.0.0]:41000 [localhost]:5002"),
])
def test_real_ssh_reads_the_printed_forward_as_meant(spec, parsed_by_ssh):
    out = subprocess.run(["ssh", "-G", "-F", "/dev/null", "-L", parse_forward(spec).openssh(41000), "example.invalid"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert f"localforward {parsed_by_ssh}" in out.stdout.splitlines()


@pytest.mark.parametrize("spec", ["0.0.0.0:8080:127.0.0.1:5002", "*:8080:127.0.0.1:5002",
                                  ":8080:127.0.0.1:5002", "[::]:8080:127.0.0.1:5002"])
def test_a_forward_on_all_interfaces_is_warned_about_with_the_local_alternatives(spec):
    warning = parse_forward(spec).public_bind_warning(8080)
    assert warning is not None
    assert "all interfaces" in warning.message and "anyone who can reach this machine" in warning.message
    assert warning.fix == "drop the bind address (-L 8080:127.0.0.1:5002) or bind 127.0.0.1 " \
                          "(-L 127.0.0.1:8080:127.0.0.1:5002)"
    assert warning.render().startswith("WARNING: ")


def test_a_forward_on_another_address_is_warned_about_and_loopback_is_not():
    assert "not loopback" in parse_forward("192.0.2.7:8080:127.0.0.1:5002").public_bind_warning().message
    for spec in ("5002", "8080:5002", "0:127.0.0.1:5002", "localhost:0:x:1", "127.0.0.2:0:x:1",
                 "[::1]:0:x:1", "[::ffff:127.0.0.1]:0:x:1"):
        assert parse_forward(spec).public_bind_warning() is None, spec


def test_the_fix_quotes_a_bracketed_forward_for_the_shell():
    warning = parse_forward("[::]:0:[fe80::1]:80").public_bind_warning(41000)
    assert warning.fix == "drop the bind address (-L '0:[fe80::1]:80') or bind 127.0.0.1 " \
                          "(-L '127.0.0.1:0:[fe80::1]:80')"


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
