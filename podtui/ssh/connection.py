"""One SSH connection: one paramiko Transport, host key verified before authentication.

We drive paramiko's Transport directly instead of SSHClient because the tunnel needs what
SSHClient hides: the cipher order (aes128-gcm first), a larger window and packet size, and the
host-key check placed between key exchange and authentication (our own reject policy: nothing is
authenticated, let alone forwarded, to a key that is not pinned).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

# paramiko imports `invoke` (and with it unittest.mock and yaml) only for ssh_config's
# "Match exec", which podtui never uses; marking it absent takes 0.17 s off every podtui start
# that connects (measured: `import paramiko` 0.45 s -> 0.28 s on the 2-core test machine).
sys.modules.setdefault("invoke", None)
import paramiko  # noqa: E402

from podtui.errors import CannotConnect
from podtui.ssh.hostkeys import HostKey
from podtui.ssh.target import SshTarget
from podtui.ssh.trust import HostKeyPolicy, TrustOutcome

# Measured on the test bed (TESTBED.md): aes128-gcm with an 8 MB window and 256 KB packets moved
# 0.92x OpenSSH's bulk throughput; paramiko's defaults (aes-ctr, 2 MB, 32 KB) half of that.
WINDOW_SIZE = 8 * 1024 * 1024
MAX_PACKET_SIZE = 256 * 1024
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")


@dataclass
class ConnectOptions:
    """How to connect: the identity to use (else ssh-agent keys, then ~/.ssh/id_* files) and the
    timeouts in seconds (connect_timeout covers TCP, banner and key exchange)."""

    identity: Path | None = None      # -i: used alone (like IdentitiesOnly=yes)
    connect_timeout: float = 10.0
    auth_timeout: float = 15.0
    keepalive_s: int = 15
    use_agent: bool = True
    default_key_dir: Path = field(default_factory=lambda: Path.home() / ".ssh")


def _load_identity(path: Path) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(str(path))
    except FileNotFoundError:
        raise CannotConnect(f"identity file {path} does not exist", "check the path given to -i") from None
    except paramiko.PasswordRequiredException:
        raise CannotConnect(f"identity {path} is protected by a passphrase",
                            "add it to your ssh-agent (ssh-add) and leave out -i") from None
    except (paramiko.SSHException, ValueError, OSError) as exc:
        raise CannotConnect(f"cannot read identity {path}: {exc}",
                            "give an OpenSSH private key (e.g. ~/.ssh/id_ed25519) to -i") from None


class SshConnection:
    """Connects (and reconnects) to one target; each connect re-runs the host-key policy."""

    def __init__(self, target: SshTarget, policy: HostKeyPolicy, options: ConnectOptions | None = None):
        self.target = target
        self.policy = policy
        self.options = options or ConnectOptions()
        self.transport: paramiko.Transport | None = None
        self.trust: TrustOutcome | None = None
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def connect(self) -> TrustOutcome:
        """TCP connect, key exchange, host-key check, authentication. Replaces any old transport.

        Returns the policy's TrustOutcome (the check may also write a pin to known_hosts). Raises
        CannotConnect (TCP, handshake, identity or authentication failure) or HostKeyNotVerified
        (key refused by the policy: nothing was authenticated).
        """
        self.close()
        sock = self._tcp_connect()
        transport = paramiko.Transport(sock, default_window_size=WINDOW_SIZE,
                                       default_max_packet_size=MAX_PACKET_SIZE)
        try:
            self._tune(transport)
            try:
                transport.start_client(timeout=self.options.connect_timeout)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise CannotConnect(f"SSH handshake with {self.target.label} failed: {exc or type(exc).__name__}",
                                    "check that TARGET is an SSH server and the port is right") from None
            presented = HostKey.from_paramiko(transport.get_remote_server_key())
            outcome = self.policy.check(presented)   # raises HostKeyNotVerified: nothing sent yet
            self._authenticate(transport)
            transport.set_keepalive(self.options.keepalive_s)
        except BaseException:
            transport.close()
            raise
        with self._lock:
            self.transport, self.trust = transport, outcome
        return outcome

    def probe_host_key(self) -> HostKey:
        """The key the server presents, after key exchange only: no pin check, no login.
        Raises CannotConnect when TCP or the handshake fails; the transport is always closed."""
        transport = paramiko.Transport(self._tcp_connect())
        try:
            self._tune(transport)
            transport.start_client(timeout=self.options.connect_timeout)
            return HostKey.from_paramiko(transport.get_remote_server_key())
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise CannotConnect(f"SSH handshake with {self.target.label} failed: {exc or type(exc).__name__}",
                                "check that TARGET is an SSH server and the port is right") from None
        finally:
            transport.close()

    def is_active(self) -> bool:
        """Whether a transport exists and paramiko still reports it active; never raises."""
        transport = self.transport
        return transport is not None and transport.is_active()

    def close(self) -> None:
        """Close the transport (and with it every channel); idempotent, safe from any thread."""
        with self._lock:
            transport, self.transport = self.transport, None
        if transport is not None:
            transport.close()

    def __enter__(self) -> "SshConnection":
        if not self.is_active():
            self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- channels ----------------------------------------------------------------------------
    def open_exec(self, command: str, timeout: float = 10.0) -> paramiko.Channel:
        """A session channel running `command` (timeout: seconds to open it). Raises CannotConnect
        when the link is down, paramiko.SSHException when the server refuses or the open times out."""
        channel = self._require_transport().open_session(timeout=timeout)
        channel.exec_command(command)
        return channel

    def open_forward(self, remote: tuple[str, int], origin: tuple[str, int],
                     timeout: float = 10.0) -> paramiko.Channel:
        """A `direct-tcpip` channel to remote (host, port), as `ssh -L` opens, announcing origin
        (host, port) as the source (RFC 4254 7.2); timeout in seconds. Raises CannotConnect when
        the link is down, paramiko.SSHException when the server refuses or the open times out."""
        return self._require_transport().open_channel("direct-tcpip", remote, origin, timeout=timeout)

    def open_pty_keeper(self) -> paramiko.Channel | None:
        """One idle pty session. sshd sets TCP_NODELAY on the connection only for pty sessions;
        without it every new forwarded connection stalls 44 ms (Nagle vs delayed ACK).

        None when the server refuses (paramiko.SSHException / OSError are swallowed); raises
        CannotConnect when the link is already down."""
        try:
            channel = self._require_transport().open_session(timeout=5)
            channel.get_pty(term="dumb", width=80, height=24)
            channel.exec_command("sleep infinity 2>/dev/null || exec cat")
            return channel
        except (paramiko.SSHException, OSError):
            return None  # a server that refuses ptys still forwards, only slower

    def _require_transport(self) -> paramiko.Transport:
        transport = self.transport
        if transport is None or not transport.is_active():
            raise CannotConnect(f"the SSH connection to {self.target.label} is down", "retry in a moment")
        return transport

    # -- steps -------------------------------------------------------------------------------
    def _tcp_connect(self) -> socket.socket:
        address = (self.target.host, self.target.port)
        try:
            sock = socket.create_connection(address, timeout=self.options.connect_timeout)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            fix = "check the host, the port and that sshd is running"
            if isinstance(exc, socket.gaierror) and not any(c in self.target.host for c in ".:"):
                # A bare word that is no pod and no added host ends up here as a host name.
                fix = (f"{self.target.host!r} is not a Runpod pod (or no Runpod key is set), not an "
                       f"added host, and not a host name either: `podtui pods` lists pods and hosts; "
                       f"check the spelling, or set RUNPOD_API_KEY if it is a pod")
            raise CannotConnect(f"cannot reach {self.target.host}:{self.target.port}: {reason}", fix) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _tune(self, transport: paramiko.Transport) -> None:
        options = transport.get_security_options()
        available = list(options.ciphers)
        options.ciphers = tuple([c for c in FAST_CIPHERS if c in available] +
                                [c for c in available if c not in FAST_CIPHERS])
        preferred = [k for k in self.policy.preferred_key_types() if k in options.key_types]
        if preferred:
            options.key_types = tuple(preferred + [k for k in options.key_types if k not in preferred])
        transport.banner_timeout = self.options.connect_timeout
        transport.handshake_timeout = self.options.connect_timeout
        transport.auth_timeout = self.options.auth_timeout

    def _identities(self) -> list[tuple[str, paramiko.PKey]]:
        if self.options.identity is not None:
            return [(str(self.options.identity), _load_identity(self.options.identity))]
        keys: list[tuple[str, paramiko.PKey]] = []
        if self.options.use_agent and os.environ.get("SSH_AUTH_SOCK"):
            try:
                keys += [(f"agent key {k.get_fingerprint().hex()[:12]}", k)
                         for k in paramiko.Agent().get_keys()]
            except paramiko.SSHException:
                pass  # an unreachable agent is no reason to give up on the key files
        for name in DEFAULT_IDENTITIES:
            path = self.options.default_key_dir / name
            if path.exists():
                try:
                    keys.append((str(path), paramiko.PKey.from_path(str(path))))
                except (paramiko.SSHException, ValueError, OSError):
                    continue  # encrypted or unreadable default keys are skipped, like ssh does
        return keys

    def _authenticate(self, transport: paramiko.Transport) -> None:
        identities = self._identities()
        if not identities:
            raise CannotConnect(f"no SSH identity to log in to {self.target.label}",
                                "pass -i ~/.ssh/your_key, or load a key into ssh-agent")
        tried = []
        for name, key in identities:
            try:
                transport.auth_publickey(self.target.user, key)
            except paramiko.AuthenticationException:
                tried.append(name)
                continue
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise CannotConnect(f"authentication with {self.target.label} broke off: {exc}",
                                    "check the server's sshd log") from None
            if transport.is_authenticated():
                return
        raise CannotConnect(
            f"{self.target.label} refused authentication as {self.target.user!r} "
            f"(tried {', '.join(tried)})",
            "use -i with a key listed in the server's authorized_keys, or --user with the right login",
        )
