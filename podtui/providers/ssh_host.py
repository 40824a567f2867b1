"""SSH hosts the user added (their own GPU box, another cloud's VM) where `remote-agent` runs.

They are kept in podtui's config file under `[ssh_hosts]`, one inline table per name:

    [ssh_hosts]
    gpubox = {address = "root@203.0.113.9:2222", identity = "/home/me/.ssh/id_ed25519", agent_command = "remote-agent rpc"}

A host is a pod whose id is its name. Listing asks each host's agent for `status` over SSH (with
the same host-key pins as `podtui tunnel`: `[host]:port` in podtui's known_hosts) and shows
UNREACHABLE with the reason when that fails — an unpinned key, a refused login, a dead daemon.
Hosts are added and removed, never created or terminated: podtui does not own the machine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path

from podtui import paths
from podtui.config import Config, load_config, remove_config_key, update_config
from podtui.errors import PodtuiError, UsageProblem
from podtui.providers.agent_pod import agent_log_lines, pod_from_status
from podtui.agent.client import DEFAULT_AGENT_COMMAND, AgentClient
from podtui.providers.base import (UNREACHABLE, GpuType, LogLine, Pod, PodNotFound, PodSpec, Provider,
                                   ProviderError, Reach, SshEndpoint)
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.target import SshTarget, parse_ssh_target

SECTION = "ssh_hosts"
RESERVED_NAMES = frozenset({"local"})  # the local pod's id
# No '.', ':', '@' or '/': a name must never be mistaken for an address, nor an address for a name.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class SshHost:
    name: str
    user: str
    host: str
    port: int = 22
    identity: Path | None = None
    agent_command: str = DEFAULT_AGENT_COMMAND

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"

    def target(self, user: str | None = None) -> SshTarget:
        parsed = parse_ssh_target(self.address)
        assert parsed is not None  # validated when added
        login = user or self.user
        return SshTarget(parsed.host, parsed.port, login, parsed.alias,
                         f"host {self.name} ({login}@{parsed.host}:{parsed.port})")

    def as_dict(self) -> dict:
        return {"name": self.name, "address": self.address,
                "identity": None if self.identity is None else str(self.identity),
                "agent_command": self.agent_command}


def check_name(name: str) -> str:
    if not _NAME.match(name) or name in RESERVED_NAMES:
        raise UsageProblem(f"{name!r} cannot name an SSH host",
                           "use letters, digits, '-' or '_' (no dots, colons or @), and not 'local'")
    return name


def host_from_address(name: str, address: str, identity: Path | None = None,
                      agent_command: str | None = None) -> SshHost:
    target = parse_ssh_target(address)
    if target is None:
        raise UsageProblem(f"{address!r} is not an SSH address", "write it as user@host:port, e.g. root@203.0.113.9:2222")
    return SshHost(check_name(name), target.user, target.host, target.port,
                   None if identity is None else Path(identity).expanduser().resolve(),
                   agent_command or DEFAULT_AGENT_COMMAND)


def default_name(address: str) -> str:
    """`root@gpu.example.com:2222` → `gpu-example-com` (the host, made name-safe)."""
    target = parse_ssh_target(address)
    host = target.host if target is not None else address
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", host).strip("-_") or "host"
    return name[:63]


# -- the config file -------------------------------------------------------------------------

def load_hosts(config: Config | None = None) -> list[SshHost]:
    config = config if config is not None else load_config()
    section = config.data.get(SECTION, {})
    hosts = []
    for name, entry in (section.items() if isinstance(section, dict) else []):
        if not isinstance(entry, dict) or not isinstance(entry.get("address"), str):
            raise ProviderError(f"SSH host {name!r} in {config.path} has no address",
                                f"fix it there, or remove it: podtui hosts remove {name}")
        try:
            hosts.append(host_from_address(name, entry["address"], entry.get("identity"),
                                           entry.get("agent_command")))
        except UsageProblem as exc:
            raise ProviderError(f"SSH host {name!r} in {config.path}: {exc.title}",
                                f"fix it there, or remove it: podtui hosts remove {name}") from None
    return hosts


def find_host(name: str, config: Config | None = None) -> SshHost | None:
    if not _NAME.match(name):
        return None
    return next((h for h in load_hosts(config) if h.name == name), None)


def save_host(host: SshHost, path: Path | None = None) -> Path:
    entry = {"address": host.address, "agent_command": host.agent_command}
    if host.identity is not None:
        entry["identity"] = str(host.identity)
    return update_config(SECTION, {host.name: entry}, path)


def forget_host(name: str, path: Path | None = None) -> bool:
    return remove_config_key(SECTION, name, path)


# -- the provider ----------------------------------------------------------------------------

OpenAgent = Callable[[SshHost], AbstractContextManager[AgentClient]]


class SshHostProvider(Provider):
    """The added hosts as pods. It opens no connection itself: `open_agent(host)` (built by
    podtui.services.sessions.ssh_host_provider) yields an open agent client over a verified SSH
    connection and closes both on exit."""

    name = "ssh"
    reach = Reach.HOST_SSH

    def __init__(self, hosts: list[SshHost], open_agent: OpenAgent, known_hosts: KnownHosts | None = None,
                 *, connect_timeout_s: float = 5.0) -> None:
        self.hosts = hosts
        self.open_agent = open_agent
        self.known_hosts = known_hosts or KnownHosts(paths.known_hosts_file())
        self.connect_timeout_s = connect_timeout_s

    def host(self, name: str) -> SshHost:
        """The added host called `name`; PodNotFound otherwise."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise PodNotFound(f"no SSH host named {name!r}", "see them with `podtui hosts list`")

    def _probe(self, host: SshHost) -> Pod:
        endpoint = SshEndpoint(host.host, host.port, host.user)
        try:
            with self.open_agent(host) as client:
                status = client.call("status", timeout=self.connect_timeout_s + 5)
        except PodtuiError as exc:
            return Pod(id=host.name, name=host.name, provider=self.name, status=UNREACHABLE, ssh=endpoint,
                       detail=exc.title + (f" (fix: {exc.fix})" if exc.fix else ""))
        pod = pod_from_status(host.name, self.name, status if isinstance(status, dict) else {}, endpoint)
        if any(not pin.verified for pin in self.known_hosts.pins_for(host.target().alias)):
            pod = replace(pod, detail=f"{pod.detail} — host key UNVERIFIED (check it, then "
                                      f"`podtui hostkey {host.name} --pin SHA256:…`)")
        return pod

    def list_pods(self) -> list[Pod]:
        if not self.hosts:
            return []
        with ThreadPoolExecutor(max_workers=min(8, len(self.hosts)), thread_name_prefix="podtui-host") as pool:
            return list(pool.map(self._probe, self.hosts))

    def get_pod(self, pod_id: str) -> Pod:
        return self._probe(self.host(pod_id))

    def find_pod(self, ref: str) -> Pod:
        return self.get_pod(ref)

    def create_pod(self, spec: PodSpec) -> Pod:
        raise ProviderError("an SSH host is added, not launched",
                            "run `podtui hosts add user@host:port -i KEY` on a machine where remote-agent runs")

    def stop_pod(self, pod_id: str) -> Pod:
        """Stops the host's engine (frees its GPU); the machine itself is not podtui's to stop."""
        host = self.host(pod_id)
        with self.open_agent(host) as client:
            client.call("engine.stop", {}, timeout=120)
        return self._probe(host)

    def resume_pod(self, pod_id: str) -> Pod:
        raise ProviderError(f"SSH host {pod_id} is not resumed by podtui (it is your machine)",
                            f"start a model on it: podtui agent {pod_id} swap MODEL")

    def terminate_pod(self, pod_id: str) -> None:
        raise ProviderError(f"SSH host {pod_id} is not podtui's to terminate",
                            f"forget it instead: podtui hosts remove {pod_id}")

    def logs(self, pod_id: str, tail: int = 100, follow: bool = False) -> Iterator[LogLine]:
        with self.open_agent(self.host(pod_id)) as client:
            yield from agent_log_lines(client, tail, follow)

    def gpu_catalog(self) -> list[GpuType]:
        return []  # the host's GPUs are what they are: see `status`

    def cost_per_hr(self, pod: Pod) -> float:
        return 0.0  # podtui does not know what your own machine costs
