"""The printed block (contract A): fingerprints equal ssh-keygen's and podtui's parser pins them."""

from __future__ import annotations

import subprocess

import pytest

from podtui.ssh.hostkeys import parse_printed_blocks
from remote_agent.hostkey_block import (
    BEGIN,
    END,
    HostKeyFileError,
    format_block,
    parse_public_key_line,
    read_public_key,
)
from tests.testbed.sshd import fingerprint, generate_key


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_fingerprint_equals_ssh_keygen(tmp_path, kind):
    key = generate_key(tmp_path / f"k_{kind}", kind=kind)
    assert read_public_key(key.with_name(f"k_{kind}.pub")).fingerprint == fingerprint(
        key.with_name(f"k_{kind}.pub"))


def test_block_is_ed25519_first_and_podtui_pins_every_key(tmp_path):
    ecdsa = read_public_key(generate_key(tmp_path / "e", kind="ecdsa").with_name("e.pub"))
    ed = read_public_key(generate_key(tmp_path / "d").with_name("d.pub"))
    lines = format_block("pod42", [ecdsa, ed])
    assert lines[0] == BEGIN and lines[-1] == END and lines[1] == "pod: pod42"
    assert lines[2].startswith("ssh-ed25519 SHA256:") and lines[3].startswith("ecdsa-sha2-nistp256 ")
    # The pod log adds timestamps; podtui's parser takes the last complete block.
    log = "".join(f"2026-11-22T10:00:0{i}Z {line}\r\n" for i, line in enumerate(lines))
    parsed = parse_printed_blocks("boot noise\n" + log)
    assert parsed.pod == "pod42"
    assert [(k.key_type, k.base64, k.fingerprint) for k in parsed.keys] == [
        (ed.key_type, ed.blob_b64, ed.fingerprint), (ecdsa.key_type, ecdsa.blob_b64, ecdsa.fingerprint)]


def test_a_blob_of_another_type_is_refused(tmp_path):
    ed = read_public_key(generate_key(tmp_path / "d").with_name("d.pub"))
    with pytest.raises(HostKeyFileError, match="blob is a ssh-ed25519"):
        parse_public_key_line(f"ecdsa-sha2-nistp256 {ed.blob_b64}")
    with pytest.raises(HostKeyFileError, match="does not decode"):
        parse_public_key_line("ssh-ed25519 not*base64")


def test_ssh_keygen_agrees_on_the_printed_line(tmp_path):
    """The block line's blob, written back as a .pub file, fingerprints the same in ssh-keygen."""
    ed = read_public_key(generate_key(tmp_path / "d").with_name("d.pub"))
    line = format_block("p", [ed])[2]
    key_type, printed, blob = line.split()
    (tmp_path / "again.pub").write_text(f"{key_type} {blob}\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "again.pub")], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    assert out.split()[1] == printed
