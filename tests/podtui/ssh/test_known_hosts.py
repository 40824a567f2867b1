"""known_hosts is read by OpenSSH's rules (patterns, negation, case, hashed names, markers), checked
against the rules' text and against the real `ssh-keygen -F` / `ssh-keygen -H`; pin writes refuse
revoked keys and never leave OpenSSH trusting a key podtui meant to replace."""

from __future__ import annotations

import base64
import re
import subprocess
import time
from pathlib import Path

import pytest

from podtui.errors import HostKeyNotVerified
from podtui.ssh.hostkeys import HostKey
from podtui.ssh.known_hosts import (CERT_AUTHORITY, REVOKED, KnownHosts, hashed_name, match_pattern_list,
                                    names_match, parse_line)
from podtui.ssh.trust import HostKeyPolicy
from tests.testbed.sshd import generate_key

ALIAS = "[127.0.0.1]:2222"


def public_key(path: Path) -> HostKey:
    key_type, blob = Path(f"{path}.pub").read_text().split()[:2]
    return HostKey.from_base64(key_type, blob)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, HostKey]:
    d = tmp_path_factory.mktemp("keys")
    return {"a": public_key(generate_key(d / "a")), "b": public_key(generate_key(d / "b")),
            "ecdsa": public_key(generate_key(d / "c", "ecdsa"))}


def kh(key: HostKey) -> str:
    return f"{key.key_type} {key.base64}"


def ssh_keygen_hashed(name: str, key: HostKey, tmp_path: Path) -> str:
    """The names field `ssh-keygen -H` writes for name."""
    path = tmp_path / f"hash-{abs(hash(name))}"
    path.write_text(f"{name} {kh(key)}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(path)], check=True, capture_output=True)
    return path.read_text().split()[0]


# -- patterns: match.c's rules, one form at a time -----------------------------------------------

@pytest.mark.parametrize("patterns, name, expected", [
    ("foo", "foo", 1), ("foo", "fo", 0), ("foo", "fooo", 0),
    ("FOO", "foo", 1), ("foo", "FoO", 1),                           # case-insensitive both ways
    ("fo*", "foo", 1), ("fo*", "fo", 1), ("*", "anything", 1), ("*o", "foo", 1), ("*x", "foo", 0),
    ("f?o", "foo", 1), ("f?o", "fo", 0), ("f?o", "fooo", 0), ("???", "foo", 1),
    ("a*b*c", "aXXbYYc", 1), ("a*b*c", "acb", 0), ("*.ex", ".ex", 1),
    ("[127.0.0.1]:*", "[127.0.0.1]:2222", 1), ("[127.0.0.1]:*", "127.0.0.1", 0),
    ("[127.0.0.?]:2222", "[127.0.0.1]:2222", 1), ("[127.0.0.1]:2222", "[127.0.0.1]:22", 0),
    ("other,foo", "foo", 1), ("foo,", "foo", 1), (",foo", "foo", 1),
    ("foo,!foo", "foo", -1), ("!foo,foo", "foo", -1), ("*,!bad.ex", "bad.ex", -1),
    ("*,!bad.ex", "good.ex", 1), ("!bad", "good", 0), ("*,!B*", "bad", -1),
    ("é", "É", 0),                                                  # only ASCII letters fold, as tolower in C
    ("?", "é", 0), ("??", "é", 1),                                  # `?` is one byte
])
def test_pattern_lists_follow_match_c(patterns, name, expected):
    assert match_pattern_list(name, patterns) == expected


def test_a_subpattern_of_1023_bytes_ends_the_list_as_no_match():
    assert match_pattern_list("x" * 1022, "x" * 1022) == 1
    assert match_pattern_list("x" * 1023, "x" * 1023) == 0
    assert match_pattern_list("foo", "foo," + "x" * 1023) == 0      # even after a positive match
    assert match_pattern_list("foo", "!foo," + "x" * 1023) == -1    # a negation already returned


def test_no_pattern_takes_long():
    started = time.monotonic()
    assert match_pattern_list("a" * 1000, "*a" * 60 + "b") == 0
    assert time.monotonic() - started < 2


# -- hashed names: hostfile.c host_hash, checked against ssh-keygen -H ---------------------------

def test_hashed_names_from_ssh_keygen_match_only_their_name(keys, tmp_path):
    field = ssh_keygen_hashed(ALIAS, keys["a"], tmp_path)
    assert field.startswith("|1|")
    assert names_match(field, ALIAS)
    assert names_match(ssh_keygen_hashed("podtui-abc", keys["a"], tmp_path), "PODTUI-ABC")   # lower-cased
    assert not names_match(field, "[127.0.0.1]:2223")
    salt = base64.b64decode(field.split("|")[2])
    assert hashed_name(ALIAS, salt) == field                          # host_hash reproduced exactly


@pytest.mark.parametrize("damage", [
    lambda f: "|2|" + f[3:],                      # unknown magic
    lambda f: f.rsplit("|", 1)[0],                # no hash part
    lambda f: f + ",other",                       # a hashed field is one name, not a list
    lambda f: "|1||" + f.split("|")[3],           # empty salt
    lambda f: "|1|" + base64.b64encode(b"s" * 16).decode() + "|" + f.split("|")[3],  # salt not 20 bytes
    lambda f: f[:-1] + ("A" if f[-1] != "A" else "B"),
])
def test_damaged_hashed_names_match_nothing(keys, tmp_path, damage):
    field = ssh_keygen_hashed(ALIAS, keys["a"], tmp_path)
    assert not names_match(damage(field), ALIAS)


# -- lines: hostfile.c hostkeys_foreach_file / check_markers -------------------------------------

def test_lines_are_read_as_openssh_reads_them(keys):
    a = keys["a"]
    assert parse_line("", 1) is None and parse_line("   # comment", 1) is None
    line = parse_line(f" \t{ALIAS}\t{a.key_type}  {a.base64} podtui-unverified", 3)
    assert (line.number, line.marker, line.names, line.key, line.verified) == (3, None, ALIAS, a, False)
    assert parse_line(f"{ALIAS} {kh(a)}", 1).verified                    # hand-written: verified
    assert parse_line(f"{ALIAS} {kh(a)}\r", 1).key == a                  # CRLF file
    assert parse_line(f"@revoked {ALIAS} {kh(a)}", 1).marker == REVOKED
    assert parse_line(f"@cert-authority\t*\t{a.key_type}\t{a.base64}", 1).marker == CERT_AUTHORITY
    for skipped in (f"@bogus {ALIAS} {kh(a)}", f"@revoked @revoked {ALIAS} {kh(a)}",
                    f"@revoked\t{ALIAS} {kh(a)}",       # check_markers ends the marker at the first space
                    ALIAS, f"{ALIAS} {a.key_type}", f"{ALIAS} # {kh(a)}", f"{ALIAS} {a.key_type} not-base64",
                    f"{ALIAS} ecdsa-sha2-nistp256 {a.base64}", f"{ALIAS}\0 {kh(a)}"):
        assert parse_line(skipped, 1) is None, skipped


# -- the real OpenSSH as the oracle: ssh-keygen -F uses hostfile.c's matching --------------------

ORACLE_NAMES = ["podtui-abc", "podtui-abd", "[127.0.0.1]:2222", "[127.0.0.1]:22", "127.0.0.1",
                "gpu.example.com", "bad.example.com", "example.com", "podtui-x"]
ORACLE_FIELDS = ["podtui-abc", "PODTUI-ABD", "podtui-*", "podtui-ab?", "podtui-?", "[127.0.0.1]:*",
                 "[127.0.0.?]:2222", "127.0.0.*", "*.example.com,!bad.example.com", "*,!podtui-*",
                 "podtui-abc,!podtui-abc", "gpu.example.com,podtui-x", "*", "!*", "?*?", "*.*.*",
                 "[127.0.0.1]:22*", "*:22", "example.com,", ",example.com", "Bad.Example.Com"]


def found_lines(name: str, path: Path) -> set[int]:
    out = subprocess.run(["ssh-keygen", "-F", name, "-f", str(path)], check=False, capture_output=True,
                         text=True).stdout
    return {int(n) for n in re.findall(r"^# Host .* found: line (\d+)", out, re.MULTILINE)}


def test_matching_agrees_with_ssh_keygen_F_on_every_form(keys, tmp_path):
    fields = ORACLE_FIELDS + [ssh_keygen_hashed(n, keys["a"], tmp_path) for n in ("podtui-abc", ALIAS)]
    lines = [f"{field} {kh(keys['a'])}" for field in fields]
    lines += [f"@revoked {field} {kh(keys['b'])}" for field in ("[127.0.0.1]:*", "*,![127.0.0.1]:2222")]
    lines += [f"@revoked\t* {kh(keys['b'])}", f"@cert-authority\t*\t{keys['b'].key_type}\t{keys['b'].base64}",
              f"@bogus * {kh(keys['b'])}", f" \t*.com\t{kh(keys['b'])}"]
    path = tmp_path / "oracle"
    path.write_text("".join(f"{line}\n" for line in lines))
    store = KnownHosts(path)
    for name in ORACLE_NAMES:
        ours = {line.number for line in store.lines() if line.applies_to(name)}
        assert ours == found_lines(name, path), name


# -- KnownHosts: pins, revocations, listing ------------------------------------------------------

def write(tmp_path: Path, *lines: str) -> KnownHosts:
    path = tmp_path / "known_hosts"
    path.write_text("".join(f"{line}\n" for line in lines))
    return KnownHosts(path)


def test_pins_come_from_every_line_that_applies(keys, tmp_path):
    a, b, c = keys["a"], keys["b"], keys["ecdsa"]
    hashed = ssh_keygen_hashed(ALIAS, c, tmp_path)
    store = write(tmp_path, f"[127.0.0.1]:* {kh(a)} podtui-unverified", f"other,{ALIAS.upper()} {kh(b)}",
                  f"{hashed} {kh(c)}", f"{ALIAS},!{ALIAS} {kh(b)}", f"@cert-authority * {kh(c)}",
                  f"{ALIAS} {kh(a)} podtui-verified", f"@revoked * {kh(b)}")
    assert [(p.alias, p.key, p.verified) for p in store.pins_for(ALIAS)] == [
        (ALIAS, a, True), (ALIAS, b, True), (ALIAS, c, True)]        # a: verified by its second line
    assert [(p.key, p.verified) for p in store.pins_for("[127.0.0.1]:22")] == [(a, False)]
    assert store.revoked_for(ALIAS) == [b] and store.revoked_for("anything") == [b]
    assert store.pins_for("nowhere") == []
    assert KnownHosts(tmp_path / "missing").pins_for(ALIAS) == []


def test_all_pins_lists_each_name_not_the_comma_joined_field(keys, tmp_path):
    a, b = keys["a"], keys["b"]
    hashed = ssh_keygen_hashed("podtui-abc", a, tmp_path)
    store = write(tmp_path, f"podtui-abc,gpu-box {kh(a)}", f"[10.0.0.1]:*,!{ALIAS},{ALIAS} {kh(b)} podtui-unverified",
                  f"foo,!foo {kh(a)}", f"{hashed} {kh(b)}", f"@revoked podtui-abc {kh(b)}", "# note")
    assert [(p.alias, p.key, p.verified) for p in store.all_pins()] == [
        ("podtui-abc", a, True), ("gpu-box", a, True), ("[10.0.0.1]:*", b, False), (hashed, b, True)]


# -- replace: the one place every pin is written -------------------------------------------------

@pytest.mark.parametrize("revocation", ["{alias}", "[127.0.0.1]:*", "*", "hashed"])
def test_a_revoked_key_is_never_pinned_and_nothing_is_written(keys, tmp_path, revocation):
    a, b = keys["a"], keys["b"]
    names = ssh_keygen_hashed(ALIAS, a, tmp_path) if revocation == "hashed" else revocation.format(alias=ALIAS)
    store = write(tmp_path, f"{ALIAS} {kh(b)} podtui-verified", f"@revoked {names} {kh(a)}")
    before = store.path.read_bytes()
    with pytest.raises(HostKeyNotVerified) as info:
        store.replace(ALIAS, [b, a], verified=True)
    assert a.fingerprint in info.value.title and ALIAS in info.value.title and str(store.path) in info.value.title
    assert "line 2" in info.value.title and info.value.fix and info.value.exit_code == 3
    assert store.path.read_bytes() == before


def test_a_negated_revocation_does_not_refuse(keys, tmp_path):
    a = keys["a"]
    store = write(tmp_path, f"@revoked *,!{ALIAS} {kh(a)}")
    assert [p.key for p in store.replace(ALIAS, [a], verified=True)] == [a]
    assert store.pins_for(ALIAS)[0].key == a


def test_replace_rewrites_plain_names_and_keeps_every_other_line_byte_for_byte(keys, tmp_path):
    a, b, alias = keys["a"], keys["b"], "podtui-abc"
    path = tmp_path / "known_hosts"
    kept = [b"# \xff not utf-8", b"other\t" + kh(b).encode() + b"  spaced", b"crlf " + kh(a).encode() + b"\r",
            b"@revoked unrelated " + kh(a).encode()]
    path.write_bytes(b"\n".join(kept[:2] + [f"PODTUI-ABC,gpu-box {kh(a)} x".encode(),   # any case
                                            f"{alias},!nobody {kh(a)}".encode(), f"{alias} {kh(a)}".encode()]
                                + kept[2:]) + b"\n")
    store = KnownHosts(path)
    pins = store.replace(alias, [b], verified=False)
    assert [(p.alias, p.key, p.verified) for p in pins] == [(alias, b, False)]
    assert path.read_bytes().split(b"\n") == kept[:2] + [f"gpu-box {kh(a)} x".encode()] + kept[2:] + [
        f"{alias} {kh(b)} podtui-unverified".encode(), b""]
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.key for p in store.pins_for(alias)] == [b] and [p.key for p in store.pins_for("gpu-box")] == [a]


@pytest.mark.parametrize("form", ["hashed", "[127.0.0.1]:*", f"{ALIAS},[127.0.0.1]:*"])
def test_replace_refuses_while_a_line_it_cannot_rewrite_still_trusts_another_key(keys, tmp_path, form):
    a, b = keys["a"], keys["b"]
    names = ssh_keygen_hashed(ALIAS, a, tmp_path) if form == "hashed" else form
    store = write(tmp_path, "# first", f"{names} {kh(a)}")
    before = store.path.read_bytes()
    with pytest.raises(HostKeyNotVerified) as info:
        store.replace(ALIAS, [b], verified=True)
    assert "line 2" in info.value.title and ALIAS in info.value.title and a.fingerprint in info.value.title
    assert (ALIAS in info.value.fix) and store.path.read_bytes() == before


def test_replace_keeps_such_a_line_when_it_pins_one_of_the_keys_or_a_revoked_one(keys, tmp_path):
    a, b, c = keys["a"], keys["b"], keys["ecdsa"]
    hashed = ssh_keygen_hashed(ALIAS, a, tmp_path)
    store = write(tmp_path, f"{hashed} {kh(a)}", f"[127.0.0.1]:* {kh(c)} podtui-unverified",
                  f"@revoked {ALIAS} {kh(c)}")
    pins = store.replace(ALIAS, [a, b], verified=True)
    assert [(p.key, p.verified) for p in pins] == [(a, True), (b, True)]
    text = store.path.read_text()
    assert text.startswith(f"{hashed} {kh(a)}\n[127.0.0.1]:* {kh(c)} podtui-unverified\n")
    assert f"{ALIAS} {kh(a)}" not in text                           # already pinned, verified, by the hashed line
    assert text.endswith(f"{ALIAS} {kh(b)} podtui-verified\n")


# -- trust: the policy uses the same rules -------------------------------------------------------

def test_the_issue_example_a_pattern_revocation_beats_a_verified_pin(keys, tmp_path):
    a = keys["a"]
    store = write(tmp_path, f"{ALIAS} {kh(a)} podtui-verified", f"@revoked [127.0.0.1]:* {kh(a)}")
    with pytest.raises(HostKeyNotVerified, match="revoked.*line 2"):
        HostKeyPolicy(store, ALIAS, "test").check(a)
    assert HostKeyPolicy(store, ALIAS, "test").preferred_key_types() == []


def test_a_negated_pin_is_no_pin_and_a_hashed_or_pattern_pin_is(keys, tmp_path):
    a = keys["a"]
    with pytest.raises(HostKeyNotVerified, match="first contact"):
        HostKeyPolicy(write(tmp_path, f"{ALIAS},!{ALIAS} {kh(a)}"), ALIAS, "test").check(a)
    for names in (ssh_keygen_hashed(ALIAS, a, tmp_path), "[127.0.0.?]:*"):
        outcome = HostKeyPolicy(write(tmp_path, f"{names} {kh(a)}"), ALIAS, "test").check(a)
        assert (outcome.key, outcome.verified, outcome.newly_pinned) == (a, True, False)


def test_a_fingerprint_verifies_only_the_key_it_vouches_for(keys, tmp_path):
    a, b = keys["a"], keys["ecdsa"]
    store = write(tmp_path, f"{ALIAS} {kh(a)} podtui-unverified", f"{ALIAS} {kh(b)} podtui-unverified")
    outcome = HostKeyPolicy(store, ALIAS, "test", fingerprints=(a.fingerprint,)).check(a)
    assert outcome.verified
    assert {p.key: p.verified for p in store.pins_for(ALIAS)} == {a: True, b: False}
