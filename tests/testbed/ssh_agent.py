"""A real OpenSSH ssh-agent on a private socket, and keys protected by a passphrase.

Keys go into the agent while their file is still plain (no askpass dance); `encrypt` then puts a
passphrase on the file, so the agent holds the same key the file now protects — the everyday
setup of `ssh-add ~/.ssh/id_ed25519` that podtui must handle like ssh does.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.testbed.procs import stop_process


def encrypt(key: Path, passphrase: str) -> Path:
    """Put `passphrase` on the (plain) private key file key, in place; the .pub stays."""
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", passphrase, "-f", str(key)], check=True,
                   stdout=subprocess.DEVNULL)
    return key


class SshAgent:
    """`ssh-agent -D -a SOCKET` in the foreground, owned by this object."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.socket = workdir / "agent.sock"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SshAgent":
        self.proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(self.socket)],
                                     stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ssh-agent did not create its socket")
            time.sleep(0.02)
        return self

    @property
    def env(self) -> dict[str, str]:
        return {"SSH_AUTH_SOCK": str(self.socket)}

    def add(self, key: Path) -> None:
        """`ssh-add KEY` (a key without passphrase)."""
        subprocess.run(["ssh-add", "-q", str(key)], env={**os.environ, **self.env}, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
