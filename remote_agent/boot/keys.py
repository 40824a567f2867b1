"""Boot's host keys and PUBLIC_KEY steps: the pod's SSH host keys (kept on the volume, so their
fingerprints survive stop/resume; the private keys never leave the pod) and the user's public keys
into authorized_keys. Each step prints what it does (or would do, dry). Standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path

from remote_agent.boot.config import BootConfig
from remote_agent.boot.steps import HOST_KEY_KINDS, BootError, Reporter, _run
from remote_agent.hostkey_block import (
    HostKeyFileError,
    HostPublicKey,
    parse_public_key_line,
    read_public_key,
)

# --- host keys ----------------------------------------------------------------------------------


def _public_from_private(cfg: BootConfig, key: Path) -> str:
    result = _run([cfg.ssh_keygen, "-y", "-f", str(key)])
    if result.returncode != 0:
        raise BootError(
            f"the host key {key} cannot be read ({result.stderr.strip() or 'ssh-keygen -y failed'})",
            f"move {key} aside (it is not deleted automatically, because a new key means every "
            "podtui that pinned this pod must re-verify it) and boot again to generate a new one",
        )
    return result.stdout.strip()


def _generate(cfg: BootConfig, kind: str, key: Path, extra: tuple[str, ...]) -> None:
    # Generate under a temporary name, then rename, so an interrupted boot never leaves half a key.
    tmp = key.with_name(key.name + ".new")
    for leftover in (tmp, Path(f"{tmp}.pub")):
        leftover.unlink(missing_ok=True)
    result = _run([cfg.ssh_keygen, "-q", "-t", kind, *extra, "-N", "", "-C",
                   f"podtui-host-{cfg.pod_id}", "-f", str(tmp)])
    if result.returncode != 0:
        raise BootError(f"ssh-keygen could not generate the {kind} host key: {result.stderr.strip()}",
                        f"check that {key.parent} is writable and has free space")
    os.replace(f"{tmp}.pub", f"{key}.pub")
    os.replace(tmp, key)


def ensure_host_keys(cfg: BootConfig, rep: Reporter) -> list[HostPublicKey]:
    """Keep the host keys on the volume, generating each one only when it is missing."""
    if not os.path.ismount(cfg.volume_dir):
        rep.warn(f"no volume mounted at {cfg.volume_dir}: host keys are kept in the container disk, so "
                 "they change after a stop/resume and podtui will ask you to re-verify; attach a "
                 f"volume at {cfg.volume_dir} (or set REMOTE_AGENT_HOST_KEY_DIR) to keep them")
    keys: list[HostPublicKey] = []
    if not cfg.host_key_dir.is_dir():
        if cfg.dry_run:
            rep.would(f"create {cfg.host_key_dir} (mode 0700)")
        else:
            cfg.host_key_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
    for kind, name, extra in HOST_KEY_KINDS:
        key = cfg.host_key_dir / name
        pub = Path(f"{key}.pub")
        if not key.exists():
            if cfg.dry_run:
                rep.would(f"generate the {kind} host key: {cfg.ssh_keygen} -q -t {kind} "
                          f"{' '.join(extra)} -N '' -f {key}".replace("  ", " "))
                continue
            _generate(cfg, kind, key, extra)
            rep.step(f"generated a new {kind} host key in {key}")
        else:
            derived = _public_from_private(cfg, key)
            current = pub.read_text().strip() if pub.exists() else ""
            if current.split()[:2] != derived.split()[:2]:
                if cfg.dry_run:
                    rep.would(f"rewrite {pub} from the private key (it is missing or does not match)")
                    keys.append(parse_public_key_line(derived))
                    continue
                pub.write_text(derived + "\n")
                rep.warn(f"{pub} was missing or did not match its private key; rewrote it")
            rep.step(f"kept the existing {kind} host key in {key}")
        if not cfg.dry_run:
            os.chmod(key, 0o600)
        try:
            keys.append(read_public_key(pub))
        except HostKeyFileError as exc:
            raise BootError(f"host public key {pub}: {exc}",
                            f"delete {pub}; it is rebuilt from the private key on the next boot")
    return keys


# --- PUBLIC_KEY → authorized_keys ---------------------------------------------------------------


def keys_in_text(text: str) -> list[tuple[str, str, str]]:
    """Every `(type, blob, comment)` in text: one key a line, or several run together on a line."""
    found: list[tuple[str, str, str]] = []
    for line in text.splitlines():
        tokens = line.split()
        i = 0
        while i < len(tokens):
            if i + 1 < len(tokens):
                try:
                    key = parse_public_key_line(f"{tokens[i]} {tokens[i + 1]}")
                except HostKeyFileError:
                    key = None
                if key is not None:
                    j = i + 2
                    comment: list[str] = []
                    while j < len(tokens):
                        try:
                            parse_public_key_line(" ".join(tokens[j : j + 2]))
                            break
                        except HostKeyFileError:
                            comment.append(tokens[j])
                            j += 1
                    found.append((key.key_type, key.blob_b64, " ".join(comment)))
                    i = j
                    continue
            i += 1
    return found


def install_public_keys(cfg: BootConfig, rep: Reporter) -> int:
    """Append PUBLIC_KEY's keys to authorized_keys once each (dir 0700, file 0600)."""
    path = cfg.authorized_keys
    offered = keys_in_text(cfg.public_key)
    if cfg.public_key.strip() and not offered:
        rep.warn("PUBLIC_KEY holds no valid OpenSSH public key; set it to the contents of your "
                 "~/.ssh/id_ed25519.pub (Runpod: Settings → SSH public keys)")
    existing_text = path.read_text() if path.exists() else ""
    present = {(t, b) for t, b, _ in keys_in_text(existing_text)}
    new = []
    for key_type, blob, comment in offered:
        if (key_type, blob) not in present:
            present.add((key_type, blob))
            new.append(" ".join(filter(None, (key_type, blob, comment))))
    if not present:
        rep.warn("no SSH public key: set PUBLIC_KEY (Runpod fills it from your account's SSH "
                 "keys) or nobody can log in, and podtui cannot reach this pod")
    if cfg.dry_run:
        rep.would(f"add {len(new)} key(s) from PUBLIC_KEY to {path} (mode 0600)")
        return len(new)
    path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if new:
        with path.open("a") as handle:
            if existing_text and not existing_text.endswith("\n"):
                handle.write("\n")
            handle.write("\n".join(new) + "\n")
    path.touch()
    os.chmod(path, 0o600)
    rep.step(f"{path}: added {len(new)} key(s) from PUBLIC_KEY, {len(present)} in all")
    return len(new)
