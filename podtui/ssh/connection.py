"""One SSH connection: one paramiko Transport, host key verified before authentication.

We drive paramiko's Transport directly instead of SSHClient because the tunnel needs what
SSHClient hides: the cipher order (aes128-gcm first), a larger window and packet size, and the
host-key check placed between key exchange and authentication (our own reject policy: nothing is
authenticated, let alone forwarded, to a key that is not pinned).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from podtui.errors import CannotConnect
from podtui.ssh.hostkeys import HostKey
from podtui.ssh.identities import AskPassphrase, Skipped, identities
from podtui.ssh.target import SshTarget
from podtui.ssh.trust import HostKeyPolicy, TrustOutcome

# Measured on the test bed (TESTBED.md): aes128-gcm with an 8 MB window and 256 KB packets moved
# 0.92x OpenSSH's bulk throughput; paramiko's defaults (aes-ctr, 2 MB, 32 KB) half of that.
WINDOW_SIZE = 8 * 1024 * 1024
MAX_PACKET_SIZE = 256 * 1024
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
# Host-key algorithms by the key they need. A server holds at most one key of each kind; asking
# for one kind at a time finds each key it holds (what `ssh-keyscan -t TYPE` does). SHA-1
# `ssh-rsa` is absent: paramiko 5 does not offer it, and OpenSSH refuses it since 8.8.
HOST_KEY_KINDS = (("ssh-ed25519",),
                  ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"),
                  ("rsa-sha2-512", "rsa-sha2-256"))
HANDSHAKE_FIX = "check that TARGET is an SSH server and the port is right"


@dataclass
class ConnectOptions:
    """How to connect: the identity to use (else ssh-agent keys, then ~/.ssh/id_* files), the
    timeouts in seconds (connect_timeout covers TCP, banner and key exchange), and the keepalive:
    a request that expects an answer every keepalive_s seconds; keepalive_misses unanswered in a
    row declare the link dead (OpenSSH's ServerAliveInterval / ServerAliveCountMax: 5 s x 3 here,
    so a silent path is noticed 15-20 s after it froze). ask_passphrase(path) -> passphrase or
    None: how to ask for an encrypted key's passphrase (None: never ask; see identities.py)."""

    identity: Path | None = None      # -i: used alone (like IdentitiesOnly=yes)
    connect_timeout: float = 10.0
    auth_timeout: float = 15.0
    keepalive_s: float = 5.0
    keepalive_misses: int = 3
    use_agent: bool = True
    default_key_dir: Path = field(default_factory=lambda: Path.home() / ".ssh")
    ask_passphrase: AskPassphrase | None = None


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _handshake_error(label: str, exc: BaseException) -> CannotConnect:
    if isinstance(exc, paramiko.IncompatiblePeer) and "host key" in str(exc):
        return CannotConnect(
            f"{label} offers no host-key algorithm podtui accepts (it wants one of ssh-ed25519, "
            f"ecdsa-sha2-*, rsa-sha2-512/256; servers offering only SHA-1 `ssh-rsa` are refused, "
            f"as OpenSSH 8.8 and later refuse them)",
            "on the server, create a modern host key (`ssh-keygen -A` adds ed25519) and drop any "
            "`HostKeyAlgorithms ssh-rsa` line from sshd_config, or upgrade its OpenSSH")
    if isinstance(exc, paramiko.IncompatiblePeer):
        return CannotConnect(f"SSH handshake with {label} failed: the server and podtui share no "
                             f"algorithm ({_reason(exc)})",
                             "upgrade the server's OpenSSH (podtui speaks what OpenSSH 8.8+ speaks)")
    return CannotConnect(f"SSH handshake with {label} failed: {_reason(exc)}", HANDSHAKE_FIX)


class SshConnection:
    """Connects (and reconnects) to one target; each connect re-runs the host-key policy.

    `down_reason` says why the last transport ended when podtui ended it (keepalives unanswered),
    None otherwise."""

    def __init__(self, target: SshTarget, policy: HostKeyPolicy, options: ConnectOptions | None = None):
        self.target = target
        self.policy = policy
        self.options = options or ConnectOptions()
        self.transport: paramiko.Transport | None = None
        self.trust: TrustOutcome | None = None
        self.down_reason: str | None = None
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def connect(self) -> TrustOutcome:
        """TCP connect, key exchange, host-key check, authentication. Replaces any old transport.

        When fingerprints were given out of band and the server first presents a key of another
        type, the key exchange is repeated for each other key type it may hold: a fingerprint of
        any of its keys is accepted, and only when none matches is the key refused.
        Returns the policy's TrustOutcome (the check may also write a pin to known_hosts). Raises
        CannotConnect (TCP, handshake, identity or authentication failure) or HostKeyNotVerified
        (key refused by the policy: nothing was authenticated).
        """
        self.close()
        transport, presented = self._handshake(self.policy.preferred_key_types())
        try:
            wanted = self.policy.fingerprints
            if wanted and presented.fingerprint not in wanted:
                found = self._handshake_matching(wanted, skip=presented.key_type)
                if found is not None:
                    transport.close()
                    transport, presented = found
            outcome = self.policy.check(presented)   # raises HostKeyNotVerified: nothing sent yet
            self._authenticate(transport)
        except BaseException:
            transport.close()
            raise
        with self._lock:
            self.transport, self.trust, self.down_reason = transport, outcome, None
        threading.Thread(target=self._keepalive, args=(transport,), daemon=True,
                         name="podtui-ssh-keepalive").start()
        return outcome

    def probe_host_key(self, key_types: tuple[str, ...] | None = None) -> HostKey:
        """The key the server presents after key exchange only (no pin check, no login), offering
        key_types alone when given. Raises CannotConnect when TCP or the handshake fails (also when
        the server holds no key of key_types); the transport is always closed."""
        transport, presented = self._handshake(list(key_types or ()), only=key_types is not None)
        transport.close()
        return presented

    def host_keys(self, first: HostKey | None = None) -> list[HostKey]:
        """Every host key the server holds, one per kind (ed25519, ECDSA, RSA), by one key exchange
        per kind, like `ssh-keyscan`; `first`, a key already probed, is not asked for again.
        Raises CannotConnect when TCP or the first handshake fails."""
        keys = [first or self.probe_host_key()]
        for kind in HOST_KEY_KINDS:
            if any(keys[0].key_type == _blob_type(algorithm) for algorithm in kind):
                continue
            try:
                keys.append(self.probe_host_key(kind))
            except CannotConnect:
                continue   # the server holds no key of this kind
        return keys

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
        when the link is down or the server refuses the session (its reason and a fix)."""
        try:
            channel = self._require_transport().open_session(timeout=timeout)
            channel.exec_command(command)
            return channel
        except paramiko.ChannelException as exc:
            raise CannotConnect(f"{self.target.label} refused a session: {exc.text or _reason(exc)}",
                                "check the server's sshd_config (MaxSessions, ForceCommand) and its "
                                "sshd log") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise CannotConnect(f"running `{command}` on {self.target.label} failed: {_reason(exc)}",
                                "retry; if it persists, check the server's sshd log") from None

    def open_forward(self, remote: tuple[str, int], origin: tuple[str, int],
                     timeout: float = 10.0) -> paramiko.Channel:
        """A `direct-tcpip` channel to remote (host, port), as `ssh -L` opens, announcing origin
        (host, port) as the source (RFC 4254 7.2); timeout in seconds. Raises CannotConnect when
        the link is down or the server refuses (its reason and the fix in the error)."""
        try:
            return self._require_transport().open_channel("direct-tcpip", remote, origin, timeout=timeout)
        except paramiko.ChannelException as exc:
            where = f"{remote[0]}:{remote[1]}"
            if exc.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
                raise CannotConnect(
                    f"{self.target.label} refuses port forwarding (to {where}): {exc.text or 'prohibited'}",
                    "the server's sshd_config must allow it: `AllowTcpForwarding yes` (or `local`), "
                    "then restart sshd") from None
            raise CannotConnect(f"{self.target.label} could not open {where}: {exc.text or _reason(exc)}",
                                "check that the engine listens there on the server") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise CannotConnect(f"opening {remote[0]}:{remote[1]} on {self.target.label} failed: "
                                f"{_reason(exc)}", "retry; if it persists, reconnect") from None

    def open_pty_keeper(self) -> paramiko.Channel | None:
        """One idle pty session. sshd sets TCP_NODELAY on the connection only for pty sessions;
        without it every new forwarded connection stalls 44 ms (Nagle vs delayed ACK).

        None when the server refuses or the link is already down: a server that refuses ptys
        still forwards, only slower; a dead link is the watcher's to notice."""
        try:
            channel = self._require_transport().open_session(timeout=5)
            channel.get_pty(term="dumb", width=80, height=24)
            channel.exec_command("sleep infinity 2>/dev/null || exec cat")
            return channel
        except (CannotConnect, paramiko.SSHException, EOFError, OSError):
            return None

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
            reason = exc.strerror or _reason(exc)
            fix = "check the host, the port and that sshd is running"
            if isinstance(exc, socket.gaierror) and not any(c in self.target.host for c in ".:"):
                # A bare word that is no pod and no added host ends up here as a host name.
                fix = (f"{self.target.host!r} is not a Runpod pod (or no Runpod key is set), not an "
                       f"added host, and not a host name either: `podtui pods` lists pods and hosts; "
                       f"check the spelling, or set RUNPOD_API_KEY if it is a pod")
            raise CannotConnect(f"cannot reach {self.target.host}:{self.target.port}: {reason}", fix) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _handshake(self, key_types: list[str], only: bool = False) -> tuple[paramiko.Transport, HostKey]:
        """TCP connect and key exchange offering key_types first (alone when `only`); the transport
        and the key presented. Raises CannotConnect; closes the transport on failure."""
        transport = paramiko.Transport(self._tcp_connect(), default_window_size=WINDOW_SIZE,
                                       default_max_packet_size=MAX_PACKET_SIZE)
        try:
            self._tune(transport, key_types, only)
            transport.start_client(timeout=self.options.connect_timeout)
            return transport, HostKey.from_paramiko(transport.get_remote_server_key())
        except (paramiko.SSHException, EOFError, OSError) as exc:
            transport.close()
            raise _handshake_error(self.target.label, exc) from None
        except BaseException:
            transport.close()
            raise

    def _handshake_matching(self, fingerprints: tuple[str, ...],
                            skip: str) -> tuple[paramiko.Transport, HostKey] | None:
        """A handshake whose presented key has one of fingerprints, trying each key kind other than
        skip's; None when no key the server holds matches."""
        for kind in HOST_KEY_KINDS:
            if any(_blob_type(algorithm) == skip for algorithm in kind):
                continue
            try:
                transport, presented = self._handshake(list(kind), only=True)
            except CannotConnect:
                continue   # no key of this kind
            if presented.fingerprint in fingerprints:
                return transport, presented
            transport.close()
        return None

    def _tune(self, transport: paramiko.Transport, key_types: list[str], only: bool) -> None:
        options = transport.get_security_options()
        available = list(options.ciphers)
        options.ciphers = tuple([c for c in FAST_CIPHERS if c in available] +
                                [c for c in available if c not in FAST_CIPHERS])
        preferred = [k for k in key_types if k in options.key_types]
        if only:
            options.key_types = tuple(preferred) or tuple(key_types)
        elif preferred:
            options.key_types = tuple(preferred + [k for k in options.key_types if k not in preferred])
        transport.banner_timeout = self.options.connect_timeout
        transport.handshake_timeout = self.options.connect_timeout
        transport.auth_timeout = self.options.auth_timeout

    def _authenticate(self, transport: paramiko.Transport) -> None:
        skipped: list[Skipped] = []
        offered: list[str] = []
        for identity in identities(self.options.identity, self.options.default_key_dir,
                                   use_agent=self.options.use_agent, ask=self.options.ask_passphrase,
                                   skipped=skipped):
            try:
                transport.auth_publickey(self.target.user, identity.key)
            except paramiko.AuthenticationException:
                offered.append(identity.label)
                continue
            except (paramiko.SSHException, EOFError, OSError) as exc:
                offered.append(identity.label)
                if not transport.is_active() and len(offered) > 1:
                    raise CannotConnect(
                        f"{self.target.label} closed the connection after refusing {len(offered) - 1} keys "
                        f"for {self.target.user!r} (OpenSSH calls this \"Too many authentication "
                        f"failures\": the server's MaxAuthTries). Offered: {'; '.join(offered)}",
                        "pass -i with the key the server expects (podtui then offers that key alone), "
                        "or remove keys from ssh-agent (`ssh-add -d KEY`)") from None
                raise CannotConnect(f"authentication with {self.target.label} broke off: {_reason(exc)}",
                                    "check the server's sshd log (`journalctl -u ssh`)") from None
            if transport.is_authenticated():
                return
        if not offered:
            detail = "".join(f"; {s.path}: {s.reason}" for s in skipped)
            raise CannotConnect(f"no SSH identity to log in to {self.target.label}{detail}",
                                "pass -i ~/.ssh/your_key, or load a key into ssh-agent (`ssh-add`)")
        skipped_note = "".join(f"; not offered: {s.path} ({s.reason})" for s in skipped)
        raise CannotConnect(
            f"{self.target.label} refused authentication as {self.target.user!r} "
            f"(offered: {'; '.join(offered)}{skipped_note})",
            "use -i with a key listed in the server's authorized_keys, or --user with the right login"
            + (" (`ssh-add` the skipped keys to offer them)" if skipped else ""),
        )

    # -- liveness ----------------------------------------------------------------------------
    def _keepalive(self, transport: paramiko.Transport) -> None:
        """Every keepalive_s, a global request that wants an answer (sshd answers even requests it
        does not know). keepalive_misses intervals in a row without an answer: the path is dead
        (TCP may stay open for hours on a frozen NAT or middlebox), so the transport is closed and
        whoever watches is_active() reconnects. paramiko's own keepalive wants no answer."""
        interval, misses = self.options.keepalive_s, 0
        answered = threading.Event()
        answered.set()
        stop = threading.Event()
        while not stop.wait(interval):
            if self.transport is not transport or not transport.is_active():
                return
            if not answered.is_set():
                misses += 1
                if misses >= self.options.keepalive_misses:
                    self.down_reason = (f"no answer from {self.target.label} to {misses} keepalives "
                                        f"in {misses * interval:.0f} s (the network path went silent)")
                    transport.close()
                    return
                continue
            misses = 0
            answered = threading.Event()
            threading.Thread(target=_ask_alive, args=(transport, answered), daemon=True,
                             name="podtui-ssh-keepalive-ask").start()


def _ask_alive(transport: paramiko.Transport, answered: threading.Event) -> None:
    try:
        transport.global_request("keepalive@openssh.com", wait=True)   # returns once answered or closed
    except (paramiko.SSHException, EOFError, OSError):
        return
    if transport.is_active():
        answered.set()


def _blob_type(algorithm: str) -> str:
    """The key type a host-key algorithm uses (`rsa-sha2-512` → `ssh-rsa`)."""
    return "ssh-rsa" if algorithm.startswith("rsa-sha2-") else algorithm
