"""A private OpenSSH sshd on 127.0.0.1:<free port> with generated host and client keys.

Runs in the foreground (-D) so the Popen owns its PID and the fixture stops exactly that process.
Starting a second server with another host key on the same port is the man-in-the-middle case.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.testbed.procs import free_port, stop_process, wait_for_port

SSHD = "/usr/sbin/sshd"


def generate_key(path: Path, kind: str = "ed25519", comment: str = "podtui-testbed") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path


def fingerprint(public_key_path: Path) -> str:
    """`SHA256:…` exactly as `ssh-keygen -lf` prints it (the reference our code must equal)."""
    out = subprocess.run(["ssh-keygen", "-lf", str(public_key_path)], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return out.split()[1]


@dataclass
class SshServer:
    workdir: Path
    port: int = field(default_factory=free_port)
    host_key: Path | None = None
    extra_config: str = ""
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.host_key is None:
            self.host_key = generate_key(self.workdir / "ssh_host_ed25519_key")
        self.authorized_keys = self.workdir / "authorized_keys"
        self.authorized_keys.touch()
        self.log_file = self.workdir / "sshd.log"
        self.config_file = self.workdir / "sshd_config"

    @property
    def host_public_key(self) -> str:
        """The `type base64` part of the host public key."""
        return " ".join(Path(f"{self.host_key}.pub").read_text().split()[:2])

    @property
    def host_fingerprint(self) -> str:
        return fingerprint(Path(f"{self.host_key}.pub"))

    def authorize(self, public_key_path: Path) -> None:
        with self.authorized_keys.open("a") as f:
            f.write(Path(public_key_path).read_text().strip() + "\n")

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_public_key}\n"

    def start(self) -> "SshServer":
        if not Path(SSHD).exists():
            raise RuntimeError(f"{SSHD} is missing: run scripts/install-system-deps.sh")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        # extra_config first: sshd keeps the first value it reads for an option, so a variant
        # (`AllowTcpForwarding no`, `MaxAuthTries 3`, another HostKey) overrides the defaults.
        self.config_file.write_text(
            "\n".join([
                self.extra_config,
                f"Port {self.port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {self.host_key}",
                f"PidFile {self.workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {self.authorized_keys}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PermitRootLogin prohibit-password",
                "AllowTcpForwarding yes",
                "LogLevel VERBOSE",
                # Bash sources ~/.bashrc for commands run by sshd when SHLVL < 2; the machine's
                # root .bashrc (pyenv init/rehash) then adds seconds, or with a stale rehash lock
                # a minute, to every exec session. Test sessions must not depend on dotfiles.
                "SetEnv SHLVL=1",
            ]) + "\n"
        )
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.config_file), "-E", str(self.log_file)],
            start_new_session=True,
        )
        wait_for_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


def have_sshd() -> bool:
    return Path(SSHD).exists() and shutil.which("ssh-keygen") is not None
