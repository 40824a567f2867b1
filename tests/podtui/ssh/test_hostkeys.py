"""Fingerprints equal ssh-keygen's; the printed block parser survives real-world log noise."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest

from podtui.errors import HostKeyNotVerified, UsageProblem
from podtui.ssh.hostkeys import (DamagedPrintedBlock, HostKey, PrintedBlockError, format_block,
                                 normalize_fingerprint, parse_printed_blocks)
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.trust import HostKeyPolicy
from tests.testbed.boot_logs import real_boot_log
from tests.testbed.sshd import fingerprint, generate_key


def public_key(path: Path) -> HostKey:
    key_type, blob = Path(f"{path}.pub").read_text().split()[:2]
    return HostKey.from_base64(key_type, blob)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    return {kind: generate_key(d / f"host_{kind}", kind) for kind in ("ed25519", "ecdsa", "rsa")}


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_fingerprint_equals_ssh_keygen(keys, kind):
    assert public_key(keys[kind]).fingerprint == fingerprint(Path(f"{keys[kind]}.pub"))


def test_normalize_fingerprint_accepts_padding_and_spaces_and_rejects_junk(keys):
    fp = public_key(keys["ed25519"]).fingerprint
    assert normalize_fingerprint(f"  {fp}=  ") == fp
    for bad in ("MD5:aa:bb", "SHA256:not*base64", "SHA256:AAAA"):
        with pytest.raises(ValueError):
            normalize_fingerprint(bad)


def block_for(keys, pod="pod-a", kinds=("ed25519", "ecdsa")):
    return format_block(pod, [public_key(keys[k]) for k in kinds])


def test_clean_block(keys):
    block = parse_printed_blocks(block_for(keys))
    assert block.pod == "pod-a"
    assert [k.key_type for k in block.keys] == ["ssh-ed25519", "ecdsa-sha2-nistp256"]
    assert block.keys[0] == public_key(keys["ed25519"])


def test_noisy_log_with_prefixes_ansi_crlf_and_two_boots_takes_the_last(keys, tmp_path):
    other = generate_key(tmp_path / "rebuilt_ed25519")
    first = block_for(keys, pod="boot-1")
    second = format_block("boot-2", [public_key(other)])

    def decorate(text: str, boot: int) -> str:
        out = []
        for i, line in enumerate(text.splitlines()):
            out.append(f"2026-11-22T10:0{boot}:{i:02d}Z \x1b[32mstdout\x1b[0m F \x1b[1m{line}\x1b[0m")
        return "\r\n".join(out)

    log = "\r\n".join([
        "starting container", "\x1b]0;title\x07 apt noise", decorate(first, 1),
        "sshd crashed, restarting", "some ssh-ed25519 SHA256:bogus line outside any block",
        decorate(second, 2), "llama-server listening on 5002",
    ])
    block = parse_printed_blocks(log)
    assert block.pod == "boot-2"
    assert block.keys == (public_key(other),)


def test_truncated_last_block_is_ignored_and_the_last_complete_one_wins(keys):
    complete = block_for(keys, pod="boot-1")
    truncated = "\n".join(block_for(keys, pod="boot-2").splitlines()[:2])  # BEGIN + pod only
    block = parse_printed_blocks(complete + "noise\n" + truncated)
    assert block.pod == "boot-1"


def test_only_a_truncated_block_is_refused(keys):
    truncated = "\n".join(block_for(keys).splitlines()[:-1])  # no END
    with pytest.raises(PrintedBlockError, match="truncated") as info:
        parse_printed_blocks(truncated)
    assert info.value.exit_code == 3


def test_no_block_at_all_is_refused():
    with pytest.raises(PrintedBlockError, match="no complete host-key block"):
        parse_printed_blocks("just\r\nsome\nlog lines\n")


def test_tampered_fingerprint_is_refused_not_skipped(keys, tmp_path):
    good = block_for(keys, pod="boot-1")
    attacker = public_key(generate_key(tmp_path / "attacker"))
    genuine_fp = public_key(keys["ed25519"]).fingerprint
    # The attacker swaps in their key but keeps the genuine fingerprint a human would compare.
    tampered = format_block("boot-2", [attacker]).replace(attacker.fingerprint, genuine_fp)
    with pytest.raises(PrintedBlockError, match="tampered") as info:
        parse_printed_blocks(good + tampered)
    assert isinstance(info.value, HostKeyNotVerified)


def test_blob_of_another_type_is_refused(keys):
    ed = public_key(keys["ed25519"])
    line = f"ecdsa-sha2-nistp256 {ed.fingerprint} {ed.base64}"
    text = f"-----BEGIN PODTUI HOST KEYS-----\npod: x\n{line}\n-----END PODTUI HOST KEYS-----\n"
    with pytest.raises(PrintedBlockError, match="damaged"):
        parse_printed_blocks(text)


def test_block_written_by_remote_agent_boot_parses(keys):
    """Contract A from the writer's side (remote_agent/hostkey_block.py)."""
    from remote_agent import hostkey_block
    lines = [hostkey_block.read_public_key(Path(f"{keys[k]}.pub")).block_line() for k in ("ed25519", "ecdsa")]
    text = "\n".join([hostkey_block.BEGIN, "pod: abc123", *lines, hostkey_block.END])
    assert parse_printed_blocks(text).keys == (public_key(keys["ed25519"]), public_key(keys["ecdsa"]))


NVIDIA_NOISE = "[nvidia-device-plugin] pod: allocated 1 GPU"


def interleave_in_block(log: str, noise: str) -> str:
    """The log with `noise` printed after every line of its host-key block, as another process
    writing to the same log at the same time would."""
    out, inside = [], False
    for line in log.splitlines():
        out.append(line)
        inside = ("BEGIN PODTUI HOST KEYS" in line) or (inside and "END PODTUI HOST KEYS" not in line)
        if inside:
            out.append(noise)
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def boot_log(keys, tmp_path_factory):
    """The log of a real `remote-agent boot` (pod abc123) whose block holds the ed25519 key."""
    return real_boot_log("abc123", keys["ed25519"], tmp_path_factory.mktemp("boot"))


@pytest.mark.parametrize("prefix", ["", "2026-11-22T10:01:00.123456Z stdout F "])
def test_another_process_printing_pod_colon_inside_the_block_does_not_rename_the_pod(keys, boot_log, prefix):
    log = interleave_in_block(boot_log, NVIDIA_NOISE)
    log = "".join(f"{prefix}{line}\n" for line in log.splitlines())
    assert log.count("pod: allocated") >= 3
    block = parse_printed_blocks(log)
    assert block.pod == "abc123"
    assert block.keys == (public_key(keys["ed25519"]),)


def test_a_second_line_that_reads_exactly_pod_token_makes_the_block_ambiguous(keys, boot_log):
    log = interleave_in_block(boot_log, "[other-daemon] pod: gpu-7")
    with pytest.raises(PrintedBlockError, match="more than one pod") as info:
        parse_printed_blocks(log)
    assert "'abc123'" in info.value.title and "'gpu-7'" in info.value.title
    assert "--fingerprint SHA256:" in info.value.fix and info.value.exit_code == 3
    # the same pod named twice (a collector that repeats a line) is no conflict
    assert parse_printed_blocks(interleave_in_block(boot_log, "[boot] pod: abc123")).pod == "abc123"


def hard_wrap(text: str, width: int = 80) -> str:
    """What a terminal or web log viewer does to long lines: break them every `width` characters."""
    return "".join("".join(line[i:i + width] + "\n" for i in range(0, max(len(line), 1), width))
                   for line in text.splitlines())


def word_wrap(text: str, width: int = 80) -> str:
    """A viewer that breaks long lines at spaces (a key blob longer than the width is broken too)."""
    return "".join("\n".join(textwrap.wrap(line, width) or [""]) + "\n" for line in text.splitlines())


@pytest.mark.parametrize("prefix", ["", "2026-11-22T10:01:00Z stdout F ", "[pod abc123] "])
@pytest.mark.parametrize("wrap", [hard_wrap, word_wrap])
def test_a_log_wrapped_at_80_columns_is_reported_as_damaged_with_how_to_paste_the_fingerprint(
        boot_log, prefix, wrap):
    log = wrap("".join(f"{prefix}{line}\n" for line in boot_log.splitlines()))
    assert "BEGIN PODTUI HOST KEYS" in log and "ssh-ed25519" in log
    with pytest.raises(DamagedPrintedBlock) as info:
        parse_printed_blocks(log)
    error = info.value
    assert "damaged" in error.title and "wrapped or cut" in error.title
    assert "--fingerprint SHA256:" in error.fix and "podtui hostkey TARGET --pin SHA256:" in error.fix
    assert "podtui's image" not in error.fix and "tamper" not in error.title
    assert error.exit_code == 3


@pytest.mark.parametrize("cut_at", [30, 40, 60, 90, 100, 120, 128])
def test_a_key_line_cut_anywhere_is_damaged_never_tampered_nor_keyless(keys, cut_at):
    for kind in ("ed25519", "ecdsa"):
        key = public_key(keys[kind])
        line = f"{key.key_type} {key.fingerprint} {key.base64}"
        cut = f"-----BEGIN PODTUI HOST KEYS-----\npod: x\n{line[:cut_at]}\n{line[cut_at:]}\n" \
              "-----END PODTUI HOST KEYS-----\n"
        with pytest.raises(DamagedPrintedBlock):
            parse_printed_blocks(cut)


def test_an_ecdsa_line_cut_after_a_good_ed25519_line_still_refuses_the_block(keys):
    ed, ec = public_key(keys["ed25519"]), public_key(keys["ecdsa"])
    ec_line = f"{ec.key_type} {ec.fingerprint} {ec.base64}"
    text = (f"-----BEGIN PODTUI HOST KEYS-----\npod: x\n{ed.key_type} {ed.fingerprint} {ed.base64}\n"
            f"{ec_line[:80]}\n{ec_line[80:160]}\n{ec_line[160:]}\n-----END PODTUI HOST KEYS-----\n")
    with pytest.raises(DamagedPrintedBlock, match="ecdsa-sha2-nistp256 line ends inside its key"):
        parse_printed_blocks(text)


def test_a_block_without_any_key_text_still_points_at_the_image():
    text = "-----BEGIN PODTUI HOST KEYS-----\npod: x\n-----END PODTUI HOST KEYS-----\n"
    with pytest.raises(PrintedBlockError, match="lists no keys") as info:
        parse_printed_blocks(text)
    assert not isinstance(info.value, DamagedPrintedBlock) and "podtui's image" in info.value.fix


def test_known_hosts_pins_round_trip_with_the_unverified_marker(keys, tmp_path):
    path = tmp_path / "cfg" / "known_hosts"
    path.parent.mkdir()
    path.write_text("# kept comment\n|1|hashed= ssh-ed25519 AAAA\n")
    store = KnownHosts(path)
    store.replace("podtui-pod1", [public_key(keys["ed25519"])], verified=False)
    store.replace("[10.0.0.1]:2222", [public_key(keys["ecdsa"])], verified=True)
    assert [(p.key, p.verified) for p in store.pins_for("podtui-pod1")] == [(public_key(keys["ed25519"]), False)]
    store.replace("podtui-pod1", [public_key(keys["ed25519"])], verified=True)
    assert store.pins_for("podtui-pod1")[0].verified
    text = path.read_text()
    assert text.startswith("# kept comment\n|1|hashed= ssh-ed25519 AAAA\n")
    assert "[10.0.0.1]:2222 ecdsa-sha2-nistp256 " in text
    assert path.stat().st_mode & 0o777 == 0o600
    assert base64.b64decode(text.split()[-2]) == public_key(keys["ed25519"]).blob


def test_known_hosts_names_that_are_lists_or_patterns_are_never_written(keys, tmp_path):
    store = KnownHosts(tmp_path / "known_hosts")
    for alias in ("podtui-a,gpu-box", "podtui-x*", "a b", "|1|abc", "host\nother"):
        with pytest.raises(UsageProblem, match="cannot be a known_hosts name"):
            store.replace(alias, [public_key(keys["ed25519"])], verified=True)
    assert not store.path.exists()


def test_pinning_anew_drops_the_alias_from_a_hand_written_multi_name_line(keys, tmp_path):
    old, new = public_key(keys["ecdsa"]), public_key(keys["ed25519"])
    path = tmp_path / "known_hosts"
    path.write_text(f"podtui-pod1,gpu-box {old.key_type} {old.base64}\n")
    store = KnownHosts(path)
    store.replace("podtui-pod1", [new], verified=True)
    assert [p.key for p in store.pins_for("podtui-pod1")] == [new]
    assert [p.key for p in store.pins_for("gpu-box")] == [old]   # the other name keeps its key


def test_a_revoked_key_is_refused_even_when_pinned(keys, tmp_path):
    key = public_key(keys["ed25519"])
    path = tmp_path / "known_hosts"
    path.write_text(f"podtui-pod1 {key.key_type} {key.base64}\n@revoked * {key.key_type} {key.base64}\n")
    policy = HostKeyPolicy(KnownHosts(path), "podtui-pod1", "pod pod1")
    with pytest.raises(HostKeyNotVerified, match="revoked"):
        policy.check(key)
