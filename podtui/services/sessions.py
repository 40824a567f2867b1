"""Every connection podtui opens to a pod, in one place: the CLI's verbs and the TUI call these.

A pod is reached one of three ways, declared by its provider (`Provider.reach`): a cloud pod over
SSH with the host keys its log printed pinned as `podtui-<id>`; an added SSH host with its own
identity and agent command, pinned as `[host]:port`; the local pod through a local bridge, no SSH.
`route_for_pod` (a listed pod) and `resolve_session_target` (TARGET on the command line) turn each
into a `SessionTarget`; `agent_session` opens the agent over it and `build_connection` is the only
place an SshConnection is made. Every connect runs the pinned host-key policy (podtui.ssh.trust):
an unpinned or changed key raises HostKeyNotVerified before a byte is sent.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import cast

from podtui import paths
from podtui.agent.client import DEFAULT_AGENT_COMMAND, AgentClient
from podtui.errors import PodtuiError
from podtui.providers.base import Pod, Provider, ProviderError, Reach
from podtui.providers.local import LOCAL_ID, LocalProvider
from podtui.providers.local_daemon import LocalDaemon
from podtui.providers.ssh_host import SshHost, SshHostProvider, find_host
from podtui.services.pods import Progress, pod_target, quiet, resolve_pod_target
from podtui.ssh.connection import ConnectOptions, SshConnection
from podtui.ssh.identities import AskPassphrase
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.target import SshTarget, pod_alias, resolve_target
from podtui.ssh.trust import HostKeyPolicy

activity = logging.getLogger("podtui.tui")  # the TUI's activity log (L)

POD_LOG_TIMEOUT_ENV = "PODTUI_POD_LOG_TIMEOUT_S"


@dataclass(frozen=True)
class SessionTarget:
    """Where a session goes: `ssh` for an SSH target, or `daemon` for the local pod (no SSH)."""

    ssh: SshTarget | None            # None: the local pod
    host: SshHost | None = None      # set when TARGET named an added SSH host
    daemon: LocalDaemon | None = None

    @property
    def local(self) -> bool:
        return self.ssh is None

    @property
    def identity(self) -> Path | None:
        return self.host.identity if self.host is not None else None

    @property
    def agent_command(self) -> str | None:
        return self.host.agent_command if self.host is not None else None


def resolve_session_target(text: str, user: str | None = None, progress: Progress = quiet, *,
                           pin_from_log: bool = True) -> SessionTarget:
    """TARGET on the command line → SessionTarget. In order: a name from `podtui hosts`, `local`,
    an explicit `ssh://` / `user@` address, a Runpod pod id or name (its printed host keys fetched
    from its log and pinned first, waiting up to $PODTUI_POD_LOG_TIMEOUT_S, default 60 s), and
    finally any `[user@]host[:port]`. Raises UsageProblem for a TARGET that is none of these,
    ProviderError/PrintedBlockError when a pod's keys cannot be read."""
    host = find_host(text)
    if host is not None:
        return SessionTarget(host.target(user), host)
    if text == LOCAL_ID:
        return SessionTarget(None, daemon=LocalDaemon())

    def pods(ref: str, login: str | None) -> SshTarget | None:
        timeout = float(os.environ.get(POD_LOG_TIMEOUT_ENV) or 60.0)
        return resolve_pod_target(ref, login, progress, block_timeout_s=timeout, pin_from_log=pin_from_log)

    return SessionTarget(resolve_target(text, user, pod_resolver=pods))


def route_for_pod(provider: Provider, pod_id: str) -> tuple[SessionTarget, Pod]:
    """A listed pod → (SessionTarget, Pod): the one place that tells pod kinds apart, by the
    provider's declared `reach`. Raises PodtuiError when a cloud pod is not running or has no
    public SSH port (nothing to connect to)."""
    if provider.reach is Reach.LOCAL:
        local = cast(LocalProvider, provider)
        return SessionTarget(None, daemon=local.daemon), local.get_pod(pod_id)
    if provider.reach is Reach.HOST_SSH:
        host = cast(SshHostProvider, provider).host(pod_id)
        return SessionTarget(host.target(), host), provider.get_pod(pod_id)
    pod = provider.get_pod(pod_id)
    if not pod.running or pod.ssh is None:
        raise PodtuiError(f"{pod.name} is {pod.status} without a public SSH port",
                          "resume it (r) and wait until it runs")
    return SessionTarget(pod_target(pod)), pod


def agent_log_target(provider: Provider, pod_id: str, known_hosts: KnownHosts) -> SshTarget | None:
    """The pod's SSH target when its engine log is read from its agent (a cloud pod whose host
    key is pinned as verified); None when the provider's own logs() is the source (the boot log
    of a pod not yet verified, an added host's or the local pod's agent)."""
    if provider.reach is not Reach.POD_SSH:
        return None
    if not any(pin.verified for pin in known_hosts.pins_for(pod_alias(pod_id))):
        return None
    return route_for_pod(provider, pod_id)[0].ssh


def connect_options(identity: Path | None = None, connect_timeout_s: float = 10.0,
                    min_auth_timeout_s: float = 15.0, ask_passphrase: AskPassphrase | None = None,
                    ) -> ConnectOptions:
    """ConnectOptions with the authentication timeout never shorter than min_auth_timeout_s;
    ask_passphrase: how to ask for an encrypted key's passphrase (the CLI passes a terminal
    prompt, podtui.ssh.identities.terminal_prompt(); None never asks)."""
    return ConnectOptions(identity=identity, connect_timeout=connect_timeout_s,
                          auth_timeout=max(connect_timeout_s, min_auth_timeout_s),
                          ask_passphrase=ask_passphrase)


def build_connection(target: SshTarget, known_hosts: KnownHosts, options: ConnectOptions | None = None,
                     fingerprints: tuple[str, ...] = (), accept_unverified: bool = False) -> SshConnection:
    """An unconnected SshConnection whose host-key policy holds target's pins in known_hosts,
    plus `fingerprints` given out of band (canonical `SHA256:…`). accept_unverified trusts an
    unknown key on first contact and pins it marked unverified (the CLI's dangerous flag)."""
    policy = HostKeyPolicy(known_hosts, target.alias, target.label, fingerprints, accept_unverified)
    return SshConnection(target, policy, options)


@contextmanager
def agent_session(session: SessionTarget, known_hosts: KnownHosts, *,
                  options: ConnectOptions | None = None, fingerprints: tuple[str, ...] = (),
                  accept_unverified: bool = False, command: str | None = None,
                  hello_timeout_s: float = 15.0, pool: AgentSessions | None = None,
                  warn: Callable[[str], None] = activity.warning) -> Iterator[AgentClient]:
    """An opened AgentClient for the session, closed on exit (with its SSH connection, unless the
    session is a cloud pod's and `pool` is given: then the pool keeps it). The local pod: its daemon through a local bridge. Otherwise a
    verified SSH connection (options default to the added host's identity, which also fills options
    that name none) and an exec channel
    running `command` (default: the added host's, else `remote-agent rpc`). A pin trusted without
    verification is reported through `warn` on every connect.
    Raises ProviderError (the local pod is not running), HostKeyNotVerified, CannotConnect,
    AgentUnavailable."""
    if session.ssh is None:
        daemon = session.daemon or LocalDaemon()
        if not daemon.running():
            raise ProviderError("the local pod is not running", "start it: podtui local start --model MODEL")
        client = daemon.client()
        try:
            yield client
        finally:
            client.close()
        return
    if pool is not None:
        client = pool.client(known_hosts, session.ssh)
        try:
            yield client
        finally:
            client.close()
        return
    if options is None:
        options = ConnectOptions(identity=session.identity)
    elif options.identity is None and session.identity is not None:
        options = replace(options, identity=session.identity)   # timeouts given, the added host's key kept
    connection = build_connection(session.ssh, known_hosts, options, fingerprints, accept_unverified)
    try:
        outcome = connection.connect()
        if outcome.warning:
            warn(outcome.warning)
        client = _open_client(connection, command or session.agent_command or DEFAULT_AGENT_COMMAND,
                              hello_timeout_s)
        try:
            yield client
        finally:
            client.close()
    finally:
        connection.close()


def _open_client(connection: SshConnection, command: str, hello_timeout_s: float = 15.0) -> AgentClient:
    client = AgentClient(connection, command, hello_timeout=hello_timeout_s)
    client.open()
    return client


@contextmanager
def open_host_agent(host: SshHost, known_hosts: KnownHosts,
                    connect_timeout_s: float = 5.0) -> Iterator[AgentClient]:
    """The agent of an added SSH host over a fresh verified connection (its own identity and
    agent command; login and greeting each get at least 10 s), closed on exit."""
    options = connect_options(host.identity, connect_timeout_s, min_auth_timeout_s=10.0)
    with agent_session(SessionTarget(host.target(), host), known_hosts, options=options,
                       hello_timeout_s=max(connect_timeout_s, 10.0)) as client:
        yield client


def ssh_host_provider(hosts: list[SshHost], known_hosts: KnownHosts | None = None,
                      connect_timeout_s: float = 5.0) -> SshHostProvider:
    """The added hosts as a provider whose agent conversations open here (open_host_agent)."""
    known_hosts = known_hosts or KnownHosts(paths.known_hosts_file())
    return SshHostProvider(hosts, partial(open_host_agent, known_hosts=known_hosts,
                                          connect_timeout_s=connect_timeout_s),
                           known_hosts, connect_timeout_s=connect_timeout_s)


@contextmanager
def agent_for(provider: Provider, pod_id: str, known_hosts: KnownHosts,
              pool: AgentSessions) -> Iterator[tuple[AgentClient, Pod]]:
    """An open agent client for a listed pod and the pod, closed afterwards: the local pod through
    its bridge, an added host over its own connection, a cloud pod over `pool`'s connection."""
    session, pod = route_for_pod(provider, pod_id)
    if session.host is not None:
        with open_host_agent(session.host, known_hosts, cast(SshHostProvider, provider).connect_timeout_s) \
                as client:
            yield client, pod
        return
    with agent_session(session, known_hosts, pool=None if session.local else pool) as client:
        yield client, pod


def tunnel_connection(provider: Provider, pod_id: str, known_hosts: KnownHosts,
                      pool: AgentSessions) -> tuple[SshConnection | None, Pod]:
    """An unconnected connection for a tunnel to a listed pod (a Tunnel connects and verifies it),
    and the pod; None for the local pod, whose engine is on this machine already. An added host
    logs in with the identity it was added with, a cloud pod with the pool's options."""
    session, pod = route_for_pod(provider, pod_id)
    if session.ssh is None:
        return None, pod
    options = ConnectOptions(identity=session.host.identity) if session.host is not None else pool.options
    return build_connection(session.ssh, known_hosts, options), pod


class AgentSessions:
    """A pool of verified SSH connections, one per pod (keyed by its known_hosts alias), opened
    lazily and reopened when dead; each agent conversation gets its own exec channel on it, so
    closing one (a log follower) ends exactly that stream. Thread-safe."""

    def __init__(self, options: ConnectOptions | None = None,
                 agent_command: str = DEFAULT_AGENT_COMMAND) -> None:
        self.options = options or ConnectOptions()
        self.agent_command = agent_command
        self._connections: dict[str, SshConnection] = {}
        self._lock = threading.Lock()

    def connection(self, known_hosts: KnownHosts, target: SshTarget) -> SshConnection:
        """The pod's live connection, connecting (and verifying the host key) when there is none.
        Raises HostKeyNotVerified or CannotConnect."""
        with self._lock:
            connection = self._connections.get(target.alias)
            if connection is not None and connection.is_active():
                return connection
            connection = build_connection(target, known_hosts, self.options)
            outcome = connection.connect()
            if outcome.warning:   # a pin the user trusted without verification: say so every time
                activity.warning(outcome.warning)
            self._connections[target.alias] = connection
            return connection

    def client(self, known_hosts: KnownHosts, target: SshTarget) -> AgentClient:
        """An opened AgentClient on the pod's pooled connection; the caller closes it."""
        return _open_client(self.connection(known_hosts, target), self.agent_command)

    def close_all(self) -> None:
        with self._lock:
            for connection in self._connections.values():
                connection.close()
            self._connections.clear()
