"""TuiServices over the real providers (podtui.providers) and PodService (podtui.services.pods).

Each configured provider contributes its pods; a provider that fails to list shows up as a
problem in the footer, not as a dialog, so one dead API never hides the other providers' pods.
Host keys: the key the server presents comes from a key-exchange-only probe (no login, nothing
sent); the printed one from the pod's log read through the provider's API — out of band.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from podtui.errors import PodtuiError
from podtui.providers.base import Pod, PodSpec, Provider
from podtui.services.pods import PodService
from podtui.ssh.agent_client import AgentClient
from podtui.ssh.connection import ConnectOptions, SshConnection
from podtui.ssh.hostkeys import HostKey, PrintedBlock
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.target import SshTarget, pod_alias
from podtui.ssh.trust import HostKeyPolicy
from podtui.ssh.tunnel import ForwardSpec, LocalPortBusy, Tunnel
from podtui.tui.agent_sessions import AgentLogFollower, AgentSessions, swap_progress
from podtui.tui.line_source import IterableFollower, LineFollower
from podtui.tui.services import (GpuChoice, HostKeyCheck, ModelOnPod, PodListing, PodRow,
                                 ProgressCallback, TuiServices)

activity = logging.getLogger("podtui.tui")  # the TUI's activity log (L)

HOST_KEY_LOG_WAIT_S = 20.0
_HF_FILE = re.compile(r"^(?P<repo>[^/:\s]+/[^/:\s]+)/(?P<file>.+\.gguf)$", re.IGNORECASE)


def _engine_state(detail: str) -> str:
    """`engine ready: tiny-a.gguf, ctx 2048` (an agent-backed pod's detail) → `ready`."""
    if not detail.startswith("engine "):
        return ""
    words = detail.removeprefix("engine ").split(":", 1)[0].split()
    return words[0] if words else ""


@dataclass
class _PendingCheck:
    pod: Pod
    presented: HostKey
    block: PrintedBlock | None


@dataclass
class ProviderServices(TuiServices):
    services: list[PodService]
    sessions: AgentSessions = field(default_factory=AgentSessions)
    log_tail: int = 1000
    tunnel_ports: range = range(5002, 5012)
    _checks: dict[str, _PendingCheck] = field(default_factory=dict)
    _tunnels: dict[str, tuple[Tunnel, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    notes: list[str] = field(default_factory=list)      # shown in the footer, e.g. no Runpod key
    needs_runpod_key: bool = False                      # the app offers the first-run dialog

    # ---- helpers -------------------------------------------------------------------------------
    def _split(self, key: str) -> tuple[PodService, str]:
        name, _, pod_id = key.partition(":")
        for service in self.services:
            if service.provider.name == name:
                return service, pod_id
        raise PodtuiError(f"no provider named {name!r} is configured", "restart podtui")

    def _row(self, provider: Provider, pod: Pod) -> PodRow:
        ctx = pod.env.get("CTX", "")
        key = f"{provider.name}:{pod.id}"
        with self._lock:
            tunnel = self._tunnels.get(key)
        return PodRow(key=key, name=pod.name, provider=provider.name,
                      status=pod.status, gpu=pod.gpu, price_per_hour=pod.price_per_hr,
                      uptime_s=pod.uptime_s, model=pod.env.get("MODEL", ""),
                      ctx=int(ctx) if ctx.isdigit() else None,
                      engine_state=_engine_state(getattr(pod, "detail", "")),
                      tunnel_url=tunnel[1] if tunnel else "",
                      idle_minutes=pod.idle_s / 60 if pod.idle_s is not None else None)

    @staticmethod
    def _known_hosts(service: PodService) -> KnownHosts:
        return service.known_hosts

    def _target(self, key: str) -> tuple[PodService, Pod, SshTarget]:
        """The pod as an SSH target with its pins (it must run and expose port 22): an added SSH
        host under its `[host]:port` name, a cloud pod under `podtui-<id>`."""
        service, pod_id = self._split(key)
        host_of = getattr(service.provider, "host", None)  # podtui.providers.ssh_host
        if host_of is not None:
            host = host_of(pod_id)
            return service, service.provider.get_pod(pod_id), host.target()
        pod = service.provider.get_pod(pod_id)
        if not pod.running or pod.ssh is None:
            raise PodtuiError(f"{pod.name} is {pod.status} without a public SSH port",
                              "resume it (r) and wait until it runs")
        target = SshTarget(pod.ssh.host, pod.ssh.port, pod.ssh.user, pod_alias(pod.id),
                           f"pod {pod.id} ({pod.name})", pod_id=pod.id)
        return service, pod, target

    # ---- pods ----------------------------------------------------------------------------------
    def list_pods(self) -> PodListing:
        listing = PodListing(problems=list(self.notes))
        for service in self.services:
            provider = service.provider
            try:
                pods = provider.list_pods()
            except PodtuiError as exc:
                listing.problems.append(f"{provider.name}: {exc.title}")
                continue
            listing.rows.extend(self._row(provider, pod) for pod in pods)
            listing.problems.extend(f"{pod.name}: {pod.detail}" for pod in pods
                                    if getattr(pod, "detail", "") and not pod.running)
        return listing

    def stop(self, key: str) -> str:
        service, pod_id = self._split(key)
        pod = service.provider.stop_pod(pod_id)
        return f"{pod.name} is {pod.status}: its volume is kept, compute billing stops"

    def resume(self, key: str) -> str:
        service, pod_id = self._split(key)
        pod = service.provider.resume_pod(pod_id)
        return f"{pod.name} is {pod.status}"

    def terminate(self, key: str) -> str:
        service, pod_id = self._split(key)
        service.provider.terminate_pod(pod_id)
        return f"pod {pod_id} terminated"

    # ---- launch --------------------------------------------------------------------------------
    def _launcher(self) -> PodService:
        for service in self.services:
            if service.provider.name == "runpod":
                return service
        raise PodtuiError("launching a pod needs a Runpod API key",
                          "restart podtui and enter the key, or set RUNPOD_API_KEY; the local pod "
                          "starts with `podtui local start --model MODEL`")

    def gpu_catalog(self) -> list[GpuChoice]:
        service = self._launcher()
        return [GpuChoice(gpu.name, gpu.memory_gib, gpu.price_per_hr)
                for gpu in service.provider.gpu_catalog()]

    def preflight_fit(self, model: str, gpu_name: str) -> str:
        from podtui.services.preflight import hf_resolve_url, preflight

        match = _HF_FILE.match(model.strip())
        if model.startswith("https://") and "/resolve/" in model:
            url = model
        elif match:
            url = hf_resolve_url(match["repo"], match["file"])
        else:
            raise PodtuiError("the pre-flight fit reads one GGUF file's header",
                              "name the file (org/repo/file.gguf or a …/resolve/… URL) to see it")
        gpu = next((g for g in self.gpu_catalog() if g.name == gpu_name), None)
        if gpu is None or not gpu.memory_gb:
            raise PodtuiError(f"the catalog does not say how much memory {gpu_name} has",
                              "pick another GPU")
        return preflight(url, int(gpu.memory_gb * (1 << 30))).message + f" ({gpu_name})"

    def launch(self, spec: dict, progress: ProgressCallback) -> str:
        service = self._launcher()
        ctx = spec.get("ctx") or None
        pod_spec = PodSpec(gpu=spec["gpu"], model=spec["model"], ctx=ctx,
                           engine=spec.get("engine"), volume_gb=spec.get("volume_gb") or None,
                           idle_stop_minutes=spec.get("idle_stop_minutes") or None,
                           name=spec.get("name") or "podtui")
        result = service.launch(pod_spec, lambda phase, detail: progress(phase, None, detail))
        keys = ", ".join(f"{pin.key.key_type} {pin.key.fingerprint}" for pin in result.pins)
        text = (f"pod {result.pod.id} is running at {result.endpoint.host}:{result.endpoint.port}; "
                f"host keys pinned from its log: {keys}")
        progress("tunnel", None, "opening the tunnel (host key checked against the new pin)")
        try:
            return f"{text}; {self.toggle_tunnel(f'{service.provider.name}:{result.pod.id}')}"
        except PodtuiError as exc:   # the pod is up and pinned either way: say what to do next
            return f"{text}; tunnel not opened: {exc.title} — press t to retry"

    # ---- host keys -----------------------------------------------------------------------------
    def host_key_check(self, key: str) -> HostKeyCheck:
        service, pod_id = self._split(key)
        pod = service.provider.get_pod(pod_id)
        if pod.ssh is None:
            raise PodtuiError(f"{pod.name} has no public SSH port yet ({pod.status})",
                              "wait until it runs, then press v again")
        target = SshTarget(pod.ssh.host, pod.ssh.port, pod.ssh.user, pod_alias(pod.id),
                           f"pod {pod.id}", pod_id=pod.id)
        policy = HostKeyPolicy(service.known_hosts, target.alias, target.label)
        presented = SshConnection(target, policy, ConnectOptions(connect_timeout=10)) \
            .probe_host_key()
        try:
            block = service.fetch_printed_block(pod, timeout_s=HOST_KEY_LOG_WAIT_S)
        except PodtuiError as exc:
            if "no host-key block" not in exc.title:
                raise          # a tampered or foreign block is an error, not "nothing printed"
            block = None
        printed = None
        if block is not None:
            same_type = [k for k in block.keys if k.key_type == presented.key_type]
            printed = (same_type or list(block.keys))[0].fingerprint
        pinned = [pin for pin in service.known_hosts.pins_for(target.alias)
                  if pin.key.key_type == presented.key_type]
        with self._lock:
            self._checks[key] = _PendingCheck(pod, presented, block)
        return HostKeyCheck(pod_name=pod.name, key_type=presented.key_type,
                            presented=presented.fingerprint, printed=printed,
                            pinned=pinned[0].key.fingerprint if pinned else None,
                            source=f"{service.provider.name} pod log")

    def pin_host_key(self, key: str, check: HostKeyCheck, *, verified: bool) -> str:
        service, _ = self._split(key)
        with self._lock:
            pending = self._checks.get(key)
        if pending is None or pending.presented.fingerprint != check.presented:
            raise PodtuiError("the host key changed since it was shown", "press v again")
        alias = pod_alias(pending.pod.id)
        if verified:
            # Pin what the pod printed (every key type), checked equal to what the server showed.
            keys = list(pending.block.keys) if pending.block and check.matches \
                else [pending.presented]
            service.known_hosts.replace(alias, keys, verified=True)
            return f"pinned {check.presented} for {pending.pod.name} (verified)"
        service.known_hosts.replace(alias, [pending.presented], verified=False)
        return f"pinned {check.presented} for {pending.pod.name} as UNVERIFIED"

    # ---- the agent ------------------------------------------------------------------------------
    @contextmanager
    def _agent(self, key: str) -> Iterator[tuple[AgentClient, Pod]]:
        """An open agent client for the pod, closed afterwards. The local pod is reached through
        its local bridge (no SSH); any other pod over SSH with its pinned host key."""
        service, pod_id = self._split(key)
        provider = service.provider
        local_daemon = getattr(provider, "daemon", None)   # podtui.providers.local.LocalProvider
        host_of = getattr(provider, "host", None)           # podtui.providers.ssh_host
        if host_of is not None:   # its identity and agent command come from podtui's config
            with provider.agent(host_of(pod_id)) as client:
                yield client, provider.get_pod(pod_id)
            return
        if local_daemon is not None:
            pod, client = provider.get_pod(pod_id), local_daemon.client()
        else:
            service, pod, target = self._target(key)
            client = self.sessions.client(self._known_hosts(service), target)
        try:
            yield client, pod
        finally:
            client.close()

    def models_on_pod(self, key: str) -> list[ModelOnPod]:
        with self._agent(key) as (client, _):
            models = client.call("models.list")
        return [ModelOnPod(str(m.get("name")), int(m.get("size_bytes") or 0),
                           str(m.get("quant") or ""), str(m.get("last_used") or ""))
                for m in models]

    def swap_model(self, key: str, model: str, progress: ProgressCallback) -> str:
        with self._agent(key) as (client, pod):
            status = client.call("engine.swap", {"model": model}, on_event=swap_progress(progress),
                                 timeout=None)
        return f"{status.get('model')} is serving on {pod.name} (ctx {status.get('ctx')})"

    def context_fit(self, key: str) -> str:
        with self._agent(key) as (client, pod):
            result = client.call("fit.search", {}, timeout=None)
        if not isinstance(result, dict):
            return f"{pod.name}: context fit finished: {result}"
        if result.get("message"):
            return f"{pod.name}: {result['message']}"
        return f"{pod.name}: the largest context that fits is {result.get('ctx')} tokens"

    # ---- tunnels -------------------------------------------------------------------------------
    def toggle_tunnel(self, key: str) -> str:
        with self._lock:
            running = self._tunnels.pop(key, None)
        if running:
            running[0].stop()
            return f"tunnel {running[1]} closed"
        service, _ = self._split(key)
        if getattr(service.provider, "daemon", None) is not None:
            return (f"no tunnel needed: the local pod's engine is at "
                    f"{service.provider.base_url()} already")
        service, pod, target = self._target(key)
        options = self.sessions.options
        host_of = getattr(service.provider, "host", None)
        if host_of is not None:   # an added SSH host logs in with the identity it was added with
            options = ConnectOptions(identity=host_of(pod.id).identity)
        connection = SshConnection(target, HostKeyPolicy(service.known_hosts, target.alias,
                                                         target.label), options)
        busy = None
        for port in self.tunnel_ports:
            tunnel = Tunnel(connection, [ForwardSpec("127.0.0.1", port, "127.0.0.1",
                                                     pod.engine_port)])
            try:
                tunnel.bind()
            except LocalPortBusy as exc:
                busy = exc
                continue
            try:
                outcome = tunnel.start()     # checks the host key against the pin before forwarding
            except BaseException:
                tunnel.stop()
                raise
            url = f"http://127.0.0.1:{port}/v1"
            with self._lock:
                self._tunnels[key] = (tunnel, url)
            if not outcome.verified:
                activity.warning(outcome.warning or f"{pod.name}: host key pinned without verification")
                return (f"tunnel up: {url} → {pod.name}:{pod.engine_port} — host key UNVERIFIED (pinned "
                        "without an out-of-band check): press v to compare it with the pod's log")
            return f"tunnel up: {url} → {pod.name}:{pod.engine_port} (host key verified)"
        raise busy or PodtuiError("no local port to forward from", "free a port from 5002")

    def close(self) -> None:
        with self._lock:
            tunnels = list(self._tunnels.values())
            self._tunnels.clear()
        for tunnel, _ in tunnels:
            tunnel.stop()
        self.sessions.close_all()

    # ---- logs ----------------------------------------------------------------------------------
    def log_follower(self, key: str | None) -> LineFollower:
        """The engine and agent log from the pod's agent when the pod runs and its host key is
        pinned; else the provider's pod log (the boot log), read through its API."""
        if key is None:
            return super().log_follower(None)
        service, pod_id = self._split(key)
        provider = service.provider
        if provider.name == "runpod" and \
                any(pin.verified for pin in service.known_hosts.pins_for(pod_alias(pod_id))):
            _, _, target = self._target(key)
            return AgentLogFollower(lambda: self.sessions.client(service.known_hosts, target),
                                    title=f"engine and agent log of pod {pod_id}",
                                    last=self.log_tail)

        def lines():
            return (line.line for line in provider.logs(pod_id, tail=self.log_tail, follow=True))

        return IterableFollower(lines, title=f"{provider.name} log of pod {pod_id}")
