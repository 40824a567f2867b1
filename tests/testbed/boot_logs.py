"""Pod logs for the double to serve, printed by the real `remote-agent boot` (dry run).

The boot runs in a temporary root whose volume already holds the test-bed sshd's host key, so the
block it prints describes the key that sshd really presents (boot keeps existing keys).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def real_boot_log(pod_id: str, host_key: Path, root: Path, *, prefix: str = "") -> str:
    key_dir = root / "workspace" / ".podtui" / "ssh"
    key_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("", ".pub"):
        shutil.copy(f"{host_key}{suffix}", key_dir / f"ssh_host_ed25519_key{suffix}")
    (key_dir / "ssh_host_ed25519_key").chmod(0o600)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MODEL", "DRYRUN", "IDLE_STOP_MINUTES", "PUBLIC_KEY", "HF_TOKEN", "RUNPOD_API_KEY")}
    env.update({"RUNPOD_POD_ID": pod_id, "RUNPOD_PUBLIC_IP": "127.0.0.1", "RUNPOD_TCP_PORT_22": "22"})
    out = subprocess.run([sys.executable, "-m", "remote_agent", "boot", "--dry-run", "--exit-on-error",
                          "--root", str(root)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout
    assert "BEGIN PODTUI HOST KEYS" in out.stdout
    return "".join(f"{prefix}{line}\n" for line in out.stdout.splitlines())
