"""Pod lifecycle above the providers: launch (create → wait → printed host keys → pin), and
resolving a pod id or name to an SSH target whose host key is pinned.

The pins come only from the pod's own log, read out of band through the provider's API
(Runpod: `GET /v2/pods/{id}/logs`), never from the SSH connection itself. Nothing here opens an
SSH connection: the tunnel and agent verbs connect later with a reject policy against these pins.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from podtui import paths
from podtui.errors import HostKeyNotVerified
from podtui.providers.base import Pod, PodNotFound, PodSpec, Provider, ProviderError, SshEndpoint
from podtui.ssh.hostkeys import NoPrintedBlock, PrintedBlock, PrintedBlockError, parse_printed_blocks
from podtui.ssh.known_hosts import HostKeyPin, KnownHosts
from podtui.ssh.target import SshTarget, pod_alias

Progress = Callable[[str, str], None]   # phase, detail
FAILED_STATUSES = ("ERROR", "TERMINATED")


def quiet(phase: str, detail: str) -> None:
    """A Progress that says nothing."""


@dataclass(frozen=True)
class LaunchResult:
    """A launched pod: its SSH endpoint, the host-key block it printed and the pins made from it."""

    pod: Pod
    endpoint: SshEndpoint
    block: PrintedBlock
    pins: list[HostKeyPin]

    def as_dict(self) -> dict:
        """The pod's as_dict plus `ssh` {host, port, user}, `known_hosts_alias` and `host_keys`
        [{type, fingerprint, verified}], for JSON output."""
        return {**self.pod.as_dict(),
                "ssh": {"host": self.endpoint.host, "port": self.endpoint.port, "user": self.endpoint.user},
                "known_hosts_alias": pod_alias(self.pod.id),
                "host_keys": [{"type": p.key.key_type, "fingerprint": p.key.fingerprint, "verified": p.verified}
                              for p in self.pins]}


class PodService:
    """Bounded waits, with progress, over one provider; pins go to podtui's known_hosts."""

    def __init__(self, provider: Provider, known_hosts: KnownHosts | None = None, *,
                 wait_timeout_s: float = 900.0, block_timeout_s: float = 300.0, poll_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.provider = provider
        self.known_hosts = known_hosts or KnownHosts(paths.known_hosts_file())
        self.wait_timeout_s = wait_timeout_s
        self.block_timeout_s = block_timeout_s
        self.poll_s = poll_s
        self._clock = clock
        self._sleep = sleep

    def launch(self, spec: PodSpec, progress: Progress = quiet) -> LaunchResult:
        """Create the pod, wait until it is reachable, read its printed host keys and pin them.
        Raises ProviderError, PrintedBlockError (NoPrintedBlock when the log has no block) or
        HostKeyNotVerified (a printed key is @revoked in known_hosts) — after creation, so the fix
        says the pod may still be billed; UsageProblem / OSError when the pins cannot be written."""
        progress("create", f"asking {self.provider.name} for a {spec.gpu} pod")
        pod = self.provider.create_pod(spec)
        progress("created", f"pod {pod.id} ({pod.name}) is {pod.status}")
        try:
            pod = self.wait_until_reachable(pod.id, progress)
            block = self.fetch_printed_block(pod, progress)
            pins = self.pin(pod, block)
        except ProviderError as exc:
            raise type(exc)(exc.title, _still_billed(pod, exc.fix)) from None
        except HostKeyNotVerified as exc:   # PrintedBlockError, NoPrintedBlock, a revoked key
            raise type(exc)(exc.title, _still_billed(pod, exc.fix)) from None
        progress("pinned", ", ".join(f"{p.key.key_type} {p.key.fingerprint}" for p in pins))
        assert pod.ssh is not None  # wait_until_reachable returns only a pod with an endpoint
        return LaunchResult(pod, pod.ssh, block, pins)

    def wait_until_reachable(self, pod_id: str, progress: Progress = quiet) -> Pod:
        """Poll (every poll_s seconds) until the pod runs and has a public port-22 mapping; returns
        that pod. Raises ProviderError when it goes to ERROR/TERMINATED or after wait_timeout_s
        seconds, PodNotFound / ProviderError from the provider."""
        deadline = self._clock() + self.wait_timeout_s
        last = ""
        while True:
            pod = self.provider.get_pod(pod_id)
            if pod.running and pod.ssh is not None:
                progress("running", f"SSH at {pod.ssh.host}:{pod.ssh.port}")
                return pod
            if pod.status.upper() in FAILED_STATUSES:
                raise ProviderError(f"pod {pod_id} went to {pod.status} while starting",
                                    f"read its log (`podtui hostkey`/the Runpod console) and terminate it")
            note = f"{pod.status}, waiting for a public port-22 mapping" if pod.running else pod.status
            if note != last:
                progress("waiting", f"pod {pod_id}: {note}")
                last = note
            if self._clock() >= deadline:
                raise ProviderError(
                    f"pod {pod_id} was not running with a public SSH port after {self.wait_timeout_s:g} s "
                    f"(last status {pod.status})",
                    "GPU hosts sometimes take long to pull the image; check again with `podtui pods`",
                )
            self._sleep(self.poll_s)

    def fetch_printed_block(self, pod: Pod, progress: Progress = quiet,
                            timeout_s: float | None = None) -> PrintedBlock:
        """The last complete host-key block in the pod's log (last 5000 lines; Runpod REST v2
        `GET /v2/pods/{id}/logs`), re-read every poll_s seconds for up to timeout_s (default
        block_timeout_s) seconds. Raises NoPrintedBlock when none appears in time, PrintedBlockError
        when it is damaged or names another pod, ProviderError when the log cannot be read."""
        deadline = self._clock() + (self.block_timeout_s if timeout_s is None else timeout_s)
        announced = False
        while True:
            text = "\n".join(line.line for line in self.provider.logs(pod.id, tail=5000))
            try:
                block = parse_printed_blocks(text)
            except NoPrintedBlock:   # any other PrintedBlockError (damaged, tampered) is never waited out
                if self._clock() >= deadline:
                    raise NoPrintedBlock(
                        f"pod {pod.id}'s log showed no host-key block within "
                        f"{(self.block_timeout_s if timeout_s is None else timeout_s):g} s; nothing was "
                        "pinned and nothing connected",
                        "the pod may still be booting (run the command again later), or it does not run "
                        "podtui's image; you can also pass --fingerprint SHA256:… from its console",
                    ) from None
                if not announced:
                    progress("log", f"waiting for pod {pod.id} to print its host keys")
                    announced = True
                self._sleep(self.poll_s)
                continue
            if block.pod and block.pod != pod.id:
                raise PrintedBlockError(
                    f"the host keys in pod {pod.id}'s log were printed by pod {block.pod!r}",
                    "do not trust this log; check the pod in the Runpod console",
                )
            progress("log", "host keys found in the pod's log: "
                     + ", ".join(f"{k.key_type} {k.fingerprint}" for k in block.keys))
            return block

    def pin(self, pod: Pod, block: PrintedBlock) -> list[HostKeyPin]:
        """Make the block's keys the only, verified pins under `podtui-<id>`; returns them. Raises
        UsageProblem for an id that cannot be a known_hosts name, HostKeyNotVerified when a key is
        @revoked for it (or a pattern/hashed line would keep trusting another key; nothing is
        written), OSError when the file cannot be written."""
        return self.known_hosts.replace(pod_alias(pod.id), list(block.keys), verified=True)

    def ssh_target(self, ref: str, user: str | None = None, progress: Progress = quiet,
                   block_timeout_s: float = 60.0, pin_from_log: bool = True) -> SshTarget:
        """The pod named by id or name as an SSH target under its `podtui-<id>` alias, with its
        printed host keys pinned (fetched from the log when it has no verified pins yet, unless
        pin_from_log is False: `hostkey --from-log` pins from a file instead). block_timeout_s in
        seconds. Raises PodNotFound, ProviderError (not running, no SSH mapping, ambiguous name, API
        failure), NoPrintedBlock / PrintedBlockError from fetch_printed_block, HostKeyNotVerified
        from pin."""
        pod = self.provider.find_pod(ref)
        if not pod.running:
            raise ProviderError(f"pod {pod.id} ({pod.name}) is {pod.status}, not running",
                                f"resume it first: podtui resume {pod.id}")
        if pod.ssh is None:
            raise ProviderError(f"pod {pod.id} has no public port-22 mapping yet",
                                "wait for it to finish starting; it needs 22/tcp among its ports")
        alias = pod_alias(pod.id)
        if pin_from_log and not any(pin.verified for pin in self.known_hosts.pins_for(alias)):
            self.pin(pod, self.fetch_printed_block(pod, progress, timeout_s=block_timeout_s))
        return pod_target(pod, user)


def pod_target(pod: Pod, user: str | None = None) -> SshTarget:
    """A cloud pod with a public SSH endpoint as an SshTarget under its `podtui-<id>` alias (its
    pins are kept per pod id: port mappings change when a pod resets). The pod must have `ssh`
    (AssertionError otherwise)."""
    assert pod.ssh is not None, "pod_target needs a pod with a public SSH endpoint"
    login = user or pod.ssh.user
    return SshTarget(pod.ssh.host, pod.ssh.port, login, pod_alias(pod.id),
                     f"pod {pod.id} ({login}@{pod.ssh.host}:{pod.ssh.port})", pod_id=pod.id)


def _still_billed(pod: Pod, fix: str) -> str:
    return (f"{fix}; pod {pod.id} was created and may still be billed: "
            f"`podtui terminate {pod.id}` removes it, `podtui stop {pod.id}` pauses it").lstrip("; ")


_LOOKS_LIKE_HOST = re.compile(r"[.:@/\[]")


def looks_like_host(text: str) -> bool:
    """An SSH address (`host.example`, `user@host`, `host:port`, `[::1]`), not a bare pod id or name."""
    return bool(_LOOKS_LIKE_HOST.search(text))


def resolve_pod_target(text: str, user: str | None = None, progress: Progress = quiet, *,
                       block_timeout_s: float = 60.0, pin_from_log: bool = True) -> SshTarget | None:
    """`pod_resolver` for podtui.ssh.target.resolve_target: a Runpod pod id or name → SshTarget
    with its printed host keys pinned; None when TARGET is not a pod (an SSH host) or no Runpod
    key is configured, so the caller falls back to `[user@]host[:port]`. PODTUI_POLL_S sets how
    often the log is read again while waiting for the block (default 5 s). Raises what
    PodService.ssh_target raises except PodNotFound, and ConfigError for an unreadable config file."""
    if looks_like_host(text):
        return None
    from podtui.providers.runpod import NoApiKey, RunpodProvider

    warnings: list[str] = []   # e.g. a config file holding the key that others can read
    try:
        provider = RunpodProvider.from_environment(warnings=warnings)
    except NoApiKey:
        return None
    for warning in warnings:
        progress("warning", warning)
    try:
        service = PodService(provider, poll_s=float(os.environ.get("PODTUI_POLL_S") or 5.0))
        return service.ssh_target(text, user, progress, block_timeout_s=block_timeout_s,
                                  pin_from_log=pin_from_log)
    except PodNotFound:
        return None
    finally:
        provider.api.close()
