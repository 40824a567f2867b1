"""TuiServices over the real providers (podtui.providers) and PodService (podtui.services.pods):
what the TUI's screens do, without Textual.

Each configured provider contributes its pods; a provider that fails to list shows up as a
problem in the footer, not as a dialog, so one dead API never hides the other providers' pods.
Host keys: the key the server presents comes from a key-exchange-only probe (no login, nothing
sent); the printed one from the pod's log read through the provider's API — out of band.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from podtui.agent.client import AgentClient
from podtui.errors import PodtuiError
from podtui.providers.base import Pod, PodSpec, Provider
from podtui.services import hostkeys, sessions
from podtui.services.engine_access import engine_api_key, key_text
from podtui.services.dashboard_clusters import ClusterBoard, ClusterServices
from podtui.services.dashboard_endpoints import NO_KEY_FIX, NO_KEY_NOTE, NO_KEY_TITLE, EndpointBoard
from podtui.services.follow import AgentLogFollower, IterableFollower, LineFollower
from podtui.services.jupyter_access import JupyterInfo, free_local_port, jupyter_info
from podtui.services.front import (EndpointListing, GpuChoice, HostKeyCheck, ModelOnPod, PodListing, PodRow,
                                   ProgressCallback, TuiServices)
from podtui.services.pods import PodService, pod_target
from podtui.services.sessions import AgentSessions
from podtui.ssh.forwards import ForwardSpec
from podtui.ssh.hostkeys import HostKey, NoPrintedBlock, PrintedBlock
from podtui.ssh.target import pod_alias
from podtui.ssh.tunnel import LocalPortBusy, Tunnel

activity = logging.getLogger("podtui.tui")  # the TUI's activity log (L)

HOST_KEY_LOG_WAIT_S = 20.0


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
class ProviderServices(ClusterServices, TuiServices):
    """TuiServices over PodServices, one per configured provider (see TuiServices for what each
    method returns and raises). Owns the TUI's tunnels and the pool of agent connections;
    `close()` lets go of both. Thread-safe: the app calls it from worker threads."""

    services: list[PodService]
    sessions: AgentSessions = field(default_factory=AgentSessions)
    log_tail: int = 1000
    tunnel_ports: range = range(5002, 5012)
    _checks: dict[str, _PendingCheck] = field(default_factory=dict)
    _tunnels: dict[str, tuple[Tunnel, str]] = field(default_factory=dict)
    _api_keys: dict[str, str] = field(default_factory=dict)   # row key → the engine's key, once asked
    _lock: threading.Lock = field(default_factory=threading.Lock)
    notes: list[str] = field(default_factory=list)      # shown in the footer, e.g. no Runpod key
    needs_runpod_key: bool = False                      # the app offers the first-run dialog
    endpoints: EndpointBoard | None = None              # Runpod Serverless, when a Runpod key is configured
    clusters: ClusterBoard = field(default_factory=ClusterBoard)   # RPC clusters (dashboard_clusters)
    listed_rows: list[PodRow] = field(default_factory=list)        # the last list_pods rows

    @property
    def offers_endpoints(self) -> bool:   # type: ignore[override]  # declared by what is configured
        """The endpoints section shows with a Runpod key (the endpoints) or without one (how to add it)."""
        return self.endpoints is not None or self.needs_runpod_key

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
            api_key = self._api_keys.get(key, "") if pod.running else ""
        return PodRow(key=key, name=pod.name, provider=provider.name,
                      status=pod.status, gpu=pod.gpu, price_per_hour=pod.price_per_hr,
                      uptime_s=pod.uptime_s, model=pod.env.get("MODEL", ""),
                      ctx=int(ctx) if ctx.isdigit() else None,
                      engine_state=_engine_state(pod.detail),
                      tunnel_url=tunnel[1] if tunnel else "", api_key=api_key,
                      idle_minutes=pod.idle_s / 60 if pod.idle_s is not None else None)

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
                                    if pod.detail and not pod.running)
        self.listed_rows = list(listing.rows)
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
            if service.provider.can_launch:
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

        from remote_agent.models.errors import ModelError
        from remote_agent.models.refs import HubRef, parse_model_ref

        try:   # the pod's own MODEL parser: every form it accepts names the same file here
            ref = parse_model_ref(model.strip())
        except ModelError as exc:
            raise PodtuiError(f"MODEL {model!r}: {exc}", "fix MODEL as the message says") from None
        if isinstance(ref, HubRef) and ref.is_file:
            url = hf_resolve_url(ref.repo_id, ref.path, ref.revision)
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
        target = pod_target(pod)
        presented = hostkeys.probe(target, service.known_hosts)
        try:
            block = service.fetch_printed_block(pod, timeout_s=HOST_KEY_LOG_WAIT_S)
        except NoPrintedBlock:   # a tampered or foreign block is an error, not "nothing printed"
            block = None
        seen = hostkeys.compare(presented, block, service.known_hosts.pins_for(target.alias))
        with self._lock:
            self._checks[key] = _PendingCheck(pod, presented, block)
        return HostKeyCheck(pod_name=pod.name, key_type=presented.key_type,
                            presented=presented.fingerprint, printed=seen.printed, pinned=seen.pinned,
                            source=f"{service.provider.name} pod log")

    def pin_host_key(self, key: str, check: HostKeyCheck, *, verified: bool) -> str:
        service, _ = self._split(key)
        with self._lock:
            pending = self._checks.get(key)
        if pending is None or pending.presented.fingerprint != check.presented:
            raise PodtuiError("the host key changed since it was shown", "press v again")
        hostkeys.pin_checked(service.known_hosts, pod_alias(pending.pod.id), pending.presented,
                             pending.block, verified=verified)
        if verified:
            return f"pinned {check.presented} for {pending.pod.name} (verified)"
        return f"pinned {check.presented} for {pending.pod.name} as UNVERIFIED"

    # ---- the agent ------------------------------------------------------------------------------
    @contextmanager
    def _agent(self, key: str) -> Iterator[tuple[AgentClient, Pod]]:
        """An open agent client for the pod and the pod, closed afterwards (services.sessions)."""
        service, pod_id = self._split(key)
        with sessions.agent_for(service.provider, pod_id, service.known_hosts, self.sessions) as opened:
            yield opened

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
        ctx = f" (ctx {status['ctx']})" if status.get("ctx") else ""  # an engine that cannot say leaves it unknown
        return f"{status.get('model')} is serving on {pod.name}{ctx}"

    def context_fit(self, key: str) -> str:
        with self._agent(key) as (client, pod):
            result = client.call("fit.search", {}, timeout=None)
        if not isinstance(result, dict):
            return f"{pod.name}: context fit finished: {result}"
        if result.get("message"):
            return f"{pod.name}: {result['message']}"
        return f"{pod.name}: the largest context that fits is {result.get('ctx')} tokens"

    # ---- tunnels -------------------------------------------------------------------------------
    def _engine_key(self, key: str, service: PodService, pod_id: str) -> str:
        """The engine's API key from the pod's agent, remembered for the row (enter shows it), as
        the words shown beside the base URL. A failure to ask costs the tunnel nothing."""
        try:
            with sessions.agent_for(service.provider, pod_id, service.known_hosts, self.sessions) as (client, _):
                api_key = engine_api_key(client)
        except PodtuiError as exc:
            activity.warning("cannot ask the agent of %s for the engine's API key: %s", pod_id, exc.title)
            return f"API key unknown: {exc.title}"
        with self._lock:
            if api_key:
                self._api_keys[key] = api_key
            else:
                self._api_keys.pop(key, None)
        return f"API key {key_text(api_key)}"

    def _jupyter(self, service: PodService, pod_id: str) -> JupyterInfo | None:
        """The pod's Jupyter when it runs (its agent says so), else None; never fails the tunnel."""
        try:
            with sessions.agent_for(service.provider, pod_id, service.known_hosts, self.sessions) as (client, _):
                info = jupyter_info(client)
        except PodtuiError:
            return None
        return info if info is not None and info.state == "running" else None

    def toggle_tunnel(self, key: str) -> str:
        with self._lock:
            running = self._tunnels.pop(key, None)
        if running:
            running[0].stop()
            with self._lock:
                self._api_keys.pop(key, None)
            return f"tunnel {running[1]} closed"
        service, pod_id = self._split(key)
        connection, pod = sessions.tunnel_connection(service.provider, pod_id, service.known_hosts,
                                                     self.sessions)
        if connection is None:
            return (f"no tunnel needed: the local pod's engine is at "
                    f"http://127.0.0.1:{pod.engine_port}/v1 already; {self._engine_key(key, service, pod_id)}")
        jupyter = self._jupyter(service, pod_id)   # seed 001: Jupyter rides the same verified tunnel
        jupyter_port = free_local_port() if jupyter else None
        extra = [ForwardSpec("127.0.0.1", jupyter_port, "127.0.0.1", jupyter.port)] if jupyter_port else []
        busy = None
        for port in self.tunnel_ports:
            tunnel = Tunnel(connection, [ForwardSpec("127.0.0.1", port, "127.0.0.1",
                                                     pod.engine_port), *extra])
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
            api_key = self._engine_key(key, service, pod_id)
            notebook = f"; Jupyter {jupyter.url(f'http://127.0.0.1:{jupyter_port}')}" if jupyter_port else ""
            if not outcome.verified:
                activity.warning(outcome.warning or f"{pod.name}: host key pinned without verification")
                return (f"tunnel up: {url} ({api_key}) → {pod.name}:{pod.engine_port} — host key UNVERIFIED "
                        f"(pinned without an out-of-band check): press v to compare it with the pod's log{notebook}")
            return f"tunnel up: {url} ({api_key}) → {pod.name}:{pod.engine_port} (host key verified){notebook}"
        raise busy or PodtuiError("no local port to forward from", "free a port from 5002")

    def close(self) -> None:
        with self._lock:
            tunnels = list(self._tunnels.values())
            self._tunnels.clear()
        for tunnel, _ in tunnels:
            tunnel.stop()
        if self.endpoints is not None:
            self.endpoints.close()
        self.sessions.close_all()

    # ---- Runpod Serverless endpoints (podtui.services.dashboard_endpoints) ----------------------
    def _board(self) -> EndpointBoard:
        if self.endpoints is None:
            raise PodtuiError(NO_KEY_TITLE, NO_KEY_FIX)
        return self.endpoints

    def list_endpoints(self) -> EndpointListing:
        return EndpointListing(note=NO_KEY_NOTE) if self.endpoints is None else self.endpoints.list()

    def wake_endpoint(self, key: str, progress: ProgressCallback) -> str:
        return self._board().wake(key, progress)

    def test_endpoint(self, key: str, on_token: Callable[[str], None]) -> str:
        return self._board().test(key, on_token)

    def toggle_keep_warm(self, key: str) -> str:
        return self._board().toggle_keep_warm(key)

    def delete_endpoint(self, key: str) -> str:
        return self._board().delete(key)

    def endpoint_log_follower(self, key: str) -> LineFollower:
        if self.endpoints is None:   # called on the UI thread: the follower raises later, in its worker
            return super().endpoint_log_follower(key)
        return self.endpoints.log_follower(key)

    # ---- logs ----------------------------------------------------------------------------------
    def log_follower(self, key: str | None) -> LineFollower:
        """The engine and agent log from the pod's agent when the pod runs and its host key is
        pinned; else the provider's pod log (the boot log), read through its API."""
        if key is None:
            return super().log_follower(None)
        service, pod_id = self._split(key)
        provider = service.provider
        target = sessions.agent_log_target(provider, pod_id, service.known_hosts)
        if target is not None:
            return AgentLogFollower(lambda: self.sessions.client(service.known_hosts, target),
                                    title=f"engine and agent log of pod {pod_id}",
                                    last=self.log_tail)

        def lines():
            return (line.line for line in provider.logs(pod_id, tail=self.log_tail, follow=True))

        return IterableFollower(lines, title=f"{provider.name} log of pod {pod_id}")


def swap_progress(progress: ProgressCallback) -> Callable[[str, dict], None]:
    """The agent's swap events mapped onto the dialog's three bars: download, fit, load."""

    def on_event(kind: str, data: dict) -> None:
        if kind == "progress":
            phase = str(data.get("phase", ""))
            if phase in ("download", "verify"):
                total, done = data.get("total"), data.get("bytes")
                fraction = done / total if isinstance(total, int) and total and \
                    isinstance(done, int) else None
                progress("download", fraction, f"{data.get('file', '')}")
            elif phase == "resolve":
                progress("download", None, f"resolving {data.get('model', '')}")
            elif "fit" in phase or "estimate" in phase:
                progress("download", 1.0, "")
                progress("fit", data.get("fraction"), str(data.get("message", "")))
            else:
                progress("load", None, str(data.get("message", phase)))
        elif kind == "state":
            state = str(data.get("state", ""))
            progress("download", 1.0, "")
            progress("fit", 1.0, "")
            progress("load", 1.0 if state == "ready" else None, state)

    return on_event
