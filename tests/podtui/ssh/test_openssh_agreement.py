"""podtui and the real `ssh` trust the same keys from the same known_hosts: for every form of line
(exact, pattern, `?`, negation, hashed, lists, `@revoked`, `@cert-authority`), podtui's host-key
decision on a real connection to the test bed's sshd and `ssh` run with podtui's printed options
(`openssh_command`) both connect or both refuse, and with the answer OpenSSH's rules give."""

from __future__ import annotations

import dataclasses
import getpass
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from podtui import paths
from podtui.commands.ssh_options import openssh_command
from podtui.errors import HostKeyNotVerified
from podtui.services import hostkeys, sessions
from podtui.ssh.hostkeys import HostKey
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.target import SshTarget, parse_ssh_target
from tests.testbed.sshd import SshServer, generate_key, have_sshd

pytestmark = pytest.mark.skipif(not have_sshd(), reason="needs /usr/sbin/sshd and ssh-keygen")

TRUSTED, REFUSED, REVOKED = "trusted", "refused", "revoked"


def public_key(path: Path) -> HostKey:
    key_type, blob = Path(f"{path}.pub").read_text().split()[:2]
    return HostKey.from_base64(key_type, blob)


@pytest.fixture(scope="module")
def server(tmp_path_factory, client_key):
    """One sshd for the module (every case only reads known_hosts: the server never changes)."""
    sshd = SshServer(tmp_path_factory.mktemp("agreement-sshd"))
    sshd.authorize(Path(f"{client_key}.pub"))
    sshd.start()
    yield sshd
    sshd.stop()


@dataclass
class Bed:
    """The presented key K, another key O, the SSH-host alias A, and where the pins live."""

    server: SshServer
    client_key: Path
    home: Path
    known_hosts: Path
    k: str
    o: str

    @property
    def a(self) -> str:
        return f"[127.0.0.1]:{self.server.port}"

    def target(self, alias: str | None = None) -> SshTarget:
        target = parse_ssh_target(f"{getpass.getuser()}@127.0.0.1:{self.server.port}")
        assert target is not None and target.alias == self.a
        return dataclasses.replace(target, alias=alias) if alias else target

    def hashed(self, name: str) -> str:
        """The names field `ssh-keygen -H` writes for name (the real tool, not podtui's hashing)."""
        path = self.home / "to-hash"
        path.write_text(f"{name} {self.o}\n")
        subprocess.run(["ssh-keygen", "-H", "-f", str(path)], check=True, capture_output=True)
        return path.read_text().split()[0]

    def podtui(self, alias: str | None = None) -> HostKeyNotVerified | None:
        """podtui's decision on a real connection (login included); None when it connected."""
        connection = sessions.build_connection(self.target(alias), KnownHosts(self.known_hosts),
                                               sessions.connect_options(self.client_key, 5.0))
        try:
            connection.connect()
        except HostKeyNotVerified as refused:
            return refused
        try:
            channel = connection.open_exec("true")
            assert channel.recv_exit_status() == 0
        finally:
            connection.close()
        return None

    def openssh(self, alias: str | None = None) -> subprocess.CompletedProcess:
        """The printed OpenSSH command, run with `true` instead of -N, isolated from this machine's
        ssh configuration (clean HOME and environment, -F /dev/null) and its global known_hosts."""
        argv = shlex.split(openssh_command(self.target(alias), [], self.client_key))
        assert argv[:2] == ["ssh", "-N"] and f"UserKnownHostsFile={self.known_hosts}" in argv
        argv = ["ssh", "-F", "/dev/null", *argv[2:-1], "-o", "BatchMode=yes", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=5", argv[-1], "true"]
        return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                              env={"HOME": str(self.home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")})


@pytest.fixture
def bed(server, client_key, tmp_path, monkeypatch) -> Bed:
    monkeypatch.setenv("PODTUI_CONFIG_DIR", str(tmp_path / "podtui-config"))
    home = tmp_path / "home"
    home.mkdir()
    known_hosts = paths.known_hosts_file()
    known_hosts.parent.mkdir(parents=True)
    other = public_key(generate_key(tmp_path / "other"))
    return Bed(server, client_key, home, known_hosts, server.host_public_key, f"{other.key_type} {other.base64}")


def decide_both(bed: Bed, alias: str | None = None) -> str:
    """Both decisions, asserted to agree; the shared answer."""
    before = bed.known_hosts.read_bytes()
    refused = bed.podtui(alias)
    ssh = bed.openssh(alias)
    assert bed.known_hosts.read_bytes() == before, "a check without a fingerprint must not write"
    if refused is None:
        assert ssh.returncode == 0, f"podtui connected, ssh refused:\n{ssh.stderr}"
        return TRUSTED
    assert ssh.returncode == 255 and "Host key verification failed" in ssh.stderr, \
        f"podtui refused ({refused.title}), ssh: rc {ssh.returncode}\n{ssh.stderr}"
    podtui_revoked, ssh_revoked = "revoked" in refused.title, "REVOKED HOST KEY" in ssh.stderr
    assert podtui_revoked == ssh_revoked, f"podtui: {refused.title}\nssh: {ssh.stderr}"
    return REVOKED if podtui_revoked else REFUSED


# Each case: the known_hosts text (K: the server's key, O: another, A: the SSH-host alias, H(name):
# ssh-keygen -H's hashed name), the HostKeyAlias when not A, and OpenSSH's answer.
CASES = {
    "exact pin": ("{A} {K} podtui-verified", None, TRUSTED),
    "pin by [127.0.0.1]:*": ("[127.0.0.1]:* {K}", None, TRUSTED),
    "pin by ?": ("[127.0.0.?]:{P} {K}", None, TRUSTED),
    "pattern for another host only": ("[127.0.0.2]:* {K}", None, REFUSED),
    "pattern negated for this alias": ("[127.0.0.1]:*,!{A} {K}", None, REFUSED),
    "name negating itself": ("{A},!{A} {K}", None, REFUSED),
    "hashed pin from ssh-keygen -H": ("{H(A)} {K}", None, TRUSTED),
    "hashed pin of another name": ("{H([127.0.0.1]:1)} {K}", None, REFUSED),
    "comma-list": ("gpu-box,{A} {K}", None, TRUSTED),
    "changed key": ("{A} {O}", None, REFUSED),
    "another key also pinned": ("{A} {O}\n[127.0.0.1]:* {K}", None, TRUSTED),
    "CRLF line": ("{A} {K}\r", None, TRUSTED),
    "@revoked exact": ("{A} {K} podtui-verified\n@revoked {A} {K}", None, REVOKED),
    "@revoked [127.0.0.1]:*": ("{A} {K} podtui-verified\n@revoked [127.0.0.1]:* {K}", None, REVOKED),
    "@revoked *": ("@revoked * {K}\n{A} {K}", None, REVOKED),
    "@revoked with negation": ("{A} {K}\n@revoked *,!{A} {K}", None, TRUSTED),
    "@revoked hashed": ("{A} {K}\n@revoked {H(A)} {K}", None, REVOKED),
    "@revoked another key": ("{A} {K}\n@revoked * {O}", None, TRUSTED),
    "@revoked and nothing pinned": ("@revoked {A} {K}", None, REVOKED),
    "@revoked ended by a tab is no marker": ("{A} {K}\n@revoked\t* {K}", None, TRUSTED),
    "unknown marker": ("@bogus {A} {K}", None, REFUSED),
    "@cert-authority only": ("@cert-authority * {K}\n@cert-authority {A} {K}", None, REFUSED),
    "@cert-authority beside a pin": ("@cert-authority * {O}\n{A} {K}", None, TRUSTED),
    "pod alias by pattern": ("podtui-* {K}", "podtui-pod1", TRUSTED),
    "pod alias, other case in the file": ("PODTUI-POD1 {K}", "podtui-pod1", TRUSTED),
    "pod alias lower-cased before hashing": ("{H(podtui-pod1)} {K}", "podtui-POD1", TRUSTED),
    "pod alias, negated": ("podtui-*,!podtui-pod1 {K}", "podtui-pod1", REFUSED),
}


def render(bed: Bed, template: str) -> str:
    text = template
    while "{H(" in text:
        start = text.index("{H(")
        end = text.index(")}", start)
        inner = text[start + 3:end]
        text = text[:start] + bed.hashed(bed.a if inner == "A" else inner) + text[end + 2:]
    return text.replace("{A}", bed.a).replace("{K}", bed.k).replace("{O}", bed.o).replace("{P}", str(bed.server.port))


@pytest.mark.parametrize("case", CASES)
def test_podtui_and_openssh_agree(bed, case):
    template, alias, expected = CASES[case]
    bed.known_hosts.write_text(render(bed, template) + "\n")
    assert decide_both(bed, alias) == expected


def test_a_revoked_key_is_pinned_by_no_verb(bed):
    """First contact with a fingerprint or --accept-unverified (trust.py), and `hostkey --pin` /
    `hosts add` (pin_if_presented → KnownHosts.replace): all refuse, and nothing is written."""
    bed.known_hosts.write_text(render(bed, "@revoked [127.0.0.1]:* {K}") + "\n")
    before = bed.known_hosts.read_bytes()
    store = KnownHosts(bed.known_hosts)
    for options in ({"fingerprints": (bed.server.host_fingerprint,)}, {"accept_unverified": True}):
        with pytest.raises(HostKeyNotVerified, match="revoked"):
            sessions.build_connection(bed.target(), store, sessions.connect_options(bed.client_key, 5.0),
                                      **options).connect()
    with pytest.raises(HostKeyNotVerified, match="revoked") as info:
        hostkeys.pin_if_presented(bed.target(), store, bed.server.host_fingerprint, connect_timeout_s=5)
    assert bed.a in info.value.title and str(bed.known_hosts) in info.value.title
    assert bed.known_hosts.read_bytes() == before
    assert decide_both(bed) == REVOKED


def test_after_podtui_pins_ssh_trusts_the_same(bed):
    """A first contact with --fingerprint beside hand-written lines that do not apply: the pin
    podtui writes is one OpenSSH reads, and neither trusts the negated key."""
    bed.known_hosts.write_text(render(bed, "[127.0.0.1]:*,!{A} {O}\n# kept") + "\n")
    connection = sessions.build_connection(bed.target(), KnownHosts(bed.known_hosts),
                                           sessions.connect_options(bed.client_key, 5.0),
                                           fingerprints=(bed.server.host_fingerprint,))
    assert connection.connect().newly_pinned
    connection.close()
    assert decide_both(bed) == TRUSTED


def test_a_pin_podtui_cannot_make_exclusive_is_refused_and_both_keep_refusing(bed):
    """A hashed line pins another key for the alias: `hostkey --pin` of the presented key is
    refused (OpenSSH would go on trusting the other key), and both still refuse the presented one."""
    bed.known_hosts.write_text(render(bed, "{H(A)} {O}") + "\n")
    with pytest.raises(HostKeyNotVerified, match="hashed") as info:
        hostkeys.pin_if_presented(bed.target(), KnownHosts(bed.known_hosts), bed.server.host_fingerprint,
                                  connect_timeout_s=5)
    assert "line 1" in info.value.title and "ssh-keygen -R" in info.value.fix
    assert decide_both(bed) == REFUSED
