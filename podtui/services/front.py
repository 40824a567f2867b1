"""What the TUI asks of the rest of podtui, in one place: the port and its view models.

The screens call only these methods, always from worker threads (they may block on the network).
`TuiServices` is the seam: `build_app(services=…)` takes any implementation, so the CLI passes the
real one (podtui.services.dashboard) and the tests pass one backed by the test bed. Nothing here
imports Textual; podtui.tui imports this package and nothing below it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from podtui.errors import PodtuiError
from podtui.services.follow import FileFollower, LineFollower, UnavailableFollower
from podtui import paths


@dataclass(frozen=True)
class PodRow:
    """One row of the main table: a pod from any provider, as the user sees it."""

    key: str                         # unique across providers, e.g. "runpod:abc123"
    name: str
    provider: str
    status: str                      # RUNNING, EXITED, …, as the provider says
    gpu: str = ""
    price_per_hour: float | None = None
    uptime_s: float | None = None
    model: str = ""
    ctx: int | None = None
    engine_state: str = ""           # the agent's state: ready, starting, failed, …
    tunnel_url: str = ""             # local base URL while a tunnel is up
    api_key: str = ""                # the engine's API key, once a tunnel (or `t` on the local pod) asked
    idle_minutes: float | None = None  # no requests for this long (None: unknown)

    @property
    def running(self) -> bool:
        return self.status.upper() == "RUNNING"


@dataclass
class PodListing:
    """What list_pods returns: the rows and one line per provider that could not be listed."""

    rows: list[PodRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # e.g. "runpod: API key rejected"


@dataclass(frozen=True)
class HostKeyCheck:
    """What the host-key dialog compares: the key the server presents and the printed one."""

    pod_name: str
    key_type: str
    presented: str                   # SHA256:… the SSH server showed us
    printed: str | None              # SHA256:… from the pod's log (None: not available)
    pinned: str | None = None        # what is pinned today, if anything
    source: str = "pod log"          # where `printed` came from

    @property
    def matches(self) -> bool:
        return self.printed is not None and self.printed == self.presented


@dataclass(frozen=True)
class ModelOnPod:
    """A model file on a pod's disk (the agent's `models.list`); size in bytes."""

    name: str
    size_bytes: int
    quant: str = ""
    last_used: str = ""


@dataclass(frozen=True)
class GpuChoice:
    """A GPU the launch screen offers: memory in GB, price in US dollars per hour (None: unknown)."""

    name: str
    memory_gb: float
    price_per_hour: float | None
    available: bool = True


ProgressCallback = Callable[[str, float | None, str], None]   # phase, fraction, detail

WORKER_STATES = ("idle", "running", "initializing", "throttled", "unhealthy")   # SERVERLESS.md §4.3
ENDPOINT_TEST_PROMPT = "Say hello in five words."                            # what `t` on an endpoint asks


@dataclass(frozen=True)
class EndpointRow:
    """One Runpod Serverless endpoint as the endpoints table shows it.

    `state` is the runtime's word (podtui.services.endpoint_runtime.classify, SERVERLESS.md §3.4):
    warm | waking | cold | unhealthy, or "unknown" when neither /health nor the workers view could
    be read. `workers` counts workers per WORKER_STATES word; `queue` is /health's jobs inQueue
    (None: unknown). Price in US dollars per worker-hour (the dearest pool × GPUs per worker:
    an upper bound; None when the catalog does not say). Times in seconds."""

    key: str                         # the endpoint id
    name: str
    state: str
    workers: dict[str, int] = field(default_factory=dict)
    queue: int | None = None
    pools: tuple[str, ...] = ()
    gpu_count: int = 1
    price_per_worker_hr: float | None = None
    workers_min: int = 0
    workers_max: int = 0
    idle_timeout_s: int | None = None
    model: str = ""
    keep_warm: str = ""              # "" when off; else what keep-alive does now ("on · 8m left")
    diagnosis: str = ""              # why jobs wait IN_QUEUE (§3.4), when they do and no worker is warm
    warnings: tuple[str, ...] = ()   # max workers 0, UNHEALTHY workers, stale workers (§3.3, §5 #2)

    @property
    def label(self) -> str:
        """What the user types to confirm a delete: the name, or the id of an unnamed endpoint."""
        return self.name or self.key

    @property
    def scaled_to_zero(self) -> bool:
        """Max workers 0: no job will ever run (Runpod's 7-day idle scale-down, §3.3)."""
        return self.workers_max == 0


@dataclass
class EndpointListing:
    """What list_endpoints returns. `note` replaces the table when endpoints cannot be listed at
    all (no Runpod key: it says how to add one); `problems` are one line each (a failed list, a
    workers view that could not be read); `news` are things that happened since the last listing
    (keep-alive ended by its idle limit, with what it cost), each told once."""

    rows: list[EndpointRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    note: str = ""
    news: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DeviceMemory:
    """One device a backend lends (its ggml-rpc-server's banner at start): MiB free and total."""

    name: str
    free_mib: int | None
    total_mib: int | None


@dataclass(frozen=True)
class ClusterMember:
    """One pod of an RPC cluster as its agent answered `status` (podtui.services.cluster.cluster_status).

    role is "server" or "backend"; state is the agent's word (ready, paused, starting, failed, …) or
    "unreachable" when its agent could not be asked. pod_key is the PodRow.key of the same pod when
    podtui lists it ("": not a listed pod, e.g. a bare SSH address). Server only: links are
    (backend name, link state, last error) from status.cluster.links. Backend only: devices, and
    budgets_mib (APP_MEM: one per device, or one for the backend; () when unset). link_state: the
    server's link to this backend."""

    ref: str
    role: str
    state: str
    pod_key: str = ""
    build: str = ""
    last_error: str = ""
    links: tuple[tuple[str, str, str], ...] = ()
    devices: tuple[DeviceMemory, ...] = ()
    budgets_mib: tuple[int, ...] = ()
    link_state: str = ""
    tunnel_url: str = ""             # a tunnel podtui holds to it (shown for a member the pod list hides)

    @property
    def links_up(self) -> int:
        return sum(state == "up" for _, state, _ in self.links)


@dataclass(frozen=True)
class ClusterRow:
    """A remembered RPC cluster (clusters.json) as one group: the whole, then its members.

    state is the whole's word: serving | paused | links down | unreachable | starting | loading |
    stopped | failed (the server's own word otherwise); detail says why in one sentence (the paused
    server's backend named as podtui named it, the links that are down). direct: no SSH links
    (an Instant Cluster's overlay)."""

    key: str                         # "cluster:NAME"
    name: str
    state: str
    detail: str = ""
    model: str = ""
    ctx: int | None = None
    direct: bool = False
    kind: str = "pods"
    server: ClusterMember = field(default_factory=lambda: ClusterMember("", "server", "unknown"))
    backends: tuple[ClusterMember, ...] = ()

    @property
    def members(self) -> tuple[ClusterMember, ...]:
        return (self.server, *self.backends)


@dataclass
class ClusterListing:
    """What list_clusters returns: one row per remembered cluster, and one problem line for each
    that could not be asked at all."""

    rows: list[ClusterRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class NotAvailable(PodtuiError):
    """A TuiServices implementation (a test's, the benchmark's) that does not offer this action."""

    def __init__(self, action: str) -> None:
        super().__init__(f"{action} is not available in this podtui", "use the podtui command instead")


class TuiServices:
    """Everything the screens do (the port; podtui.services.dashboard.ProviderServices is the real
    implementation). Every method may block on the network: the app calls them from worker
    threads only. Methods that act return one sentence for the notification; each may raise a
    PodtuiError (title + fix, shown in the error dialog). `key` is a PodRow.key. A method an
    implementation leaves out raises NotAvailable."""

    needs_runpod_key: bool = False   # no launching provider is configured: the app offers the first-run dialog
    offers_endpoints: bool = False   # the main screen shows the Serverless endpoints section

    def list_pods(self) -> PodListing:
        """Every provider's pods as rows, and one problem line per provider that failed to list
        (a dead API never hides the other providers' pods). Never raises for a provider's failure."""
        return PodListing(problems=["no pod providers in this podtui"])

    def stop(self, key: str) -> str:
        """Stop the pod (its volume is kept; a cloud pod stops billing compute)."""
        raise NotAvailable("stop")

    def resume(self, key: str) -> str:
        """Start a stopped pod again."""
        raise NotAvailable("resume")

    def terminate(self, key: str) -> str:
        """Delete the pod and its volume (the screen asks first)."""
        raise NotAvailable("terminate")

    def toggle_tunnel(self, key: str) -> str:
        """Open a verified tunnel from a free local port (5002…) to the pod's engine port, or
        close the open one. Raises HostKeyNotVerified before any byte is forwarded to a key that
        does not match the pin, LocalPortBusy when no port in the range is free."""
        raise NotAvailable("tunnel")

    def host_key_check(self, key: str) -> HostKeyCheck:
        """The key the pod's sshd presents (key exchange only) beside the one its log printed
        (out of band) and today's pin. Raises CannotConnect, or PrintedBlockError for a damaged or
        foreign block (a missing block is `printed=None`, not an error)."""
        raise NotAvailable("host-key check")

    def pin_host_key(self, key: str, check: HostKeyCheck, *, verified: bool) -> str:
        """Pin what host_key_check showed: verified (the user compared) or marked UNVERIFIED.
        Raises PodtuiError when the presented key changed since it was shown."""
        raise NotAvailable("host-key pin")

    def models_on_pod(self, key: str) -> list[ModelOnPod]:
        """The GGUF models on the pod's disk, from its agent (`models.list`)."""
        raise NotAvailable("models on the pod")

    def swap_model(self, key: str, model: str, progress: ProgressCallback) -> str:
        """Hot-swap the served model; progress(phase, fraction 0..1 or None, detail) for the
        phases download, fit, load. Raises AgentError with the agent's code when it fails (the
        old model keeps serving: the agent rolls back)."""
        raise NotAvailable("swap")

    def context_fit(self, key: str) -> str:
        """Ask the pod's agent for the largest context that fits its memory (`fit.search`)."""
        raise NotAvailable("context fit")

    def gpu_catalog(self) -> list[GpuChoice]:
        """The GPUs the launching provider rents, with memory (GB) and $/hr."""
        raise NotAvailable("launch")

    def preflight_fit(self, model: str, gpu_name: str) -> str:
        """One line: "fits at about N tokens on <GPU>", from the GGUF header alone (pre-flight)."""
        raise NotAvailable("pre-flight fit")

    def launch(self, spec: dict, progress: ProgressCallback) -> str:
        """Create a pod from the launch form's spec (gpu, model, ctx, engine, volume_gb,
        idle_stop_minutes, name), wait until it runs, pin its printed host keys and open the tunnel."""
        raise NotAvailable("launch")

    # ---- RPC clusters (issue 18; podtui.services.dashboard_clusters) ---------------------------
    def list_clusters(self) -> ClusterListing:
        """Every remembered cluster with its members' states, asked of each member's agent (one
        session per member: slow, refreshed less often than the pods). A cluster that cannot be
        asked is a problem line, never raised."""
        return ClusterListing()

    def stop_cluster(self, name: str) -> str:
        """Stop every Runpod pod of the cluster, server first (podtui.services.cluster_pods)."""
        raise NotAvailable("stopping a cluster")

    def terminate_cluster(self, name: str) -> str:
        """Terminate every Runpod pod of the cluster and forget it (the screen asks for its name)."""
        raise NotAvailable("terminating a cluster")

    # ---- Runpod Serverless endpoints (issue 17; shown only when offers_endpoints) -------------
    def list_endpoints(self) -> EndpointListing:
        """Every endpoint with its state, workers and queue (REST v2 plus each runtime /health).
        A failed list is a problem line, never raised (like list_pods)."""
        return EndpointListing(note="Serverless endpoints are not available in this podtui")

    def wake_endpoint(self, key: str, progress: ProgressCallback) -> str:
        """Send the wake job (SERVERLESS.md §3.6) and wait until a worker answered it; progress
        (phase, None, detail) while it waits. Returns the result with the cold-start delay.
        Raises JobWaitTimeout (the job is cancelled), JobProblem, ProviderError."""
        raise NotAvailable("wake")

    def test_endpoint(self, key: str, on_token: Callable[[str], None]) -> str:
        """Stream a short chat completion through the endpoint's /openai/v1; on_token(text) per
        piece as it arrives. Returns the timing (first token, tokens/s). Raises ProviderError."""
        raise NotAvailable("test")

    def toggle_keep_warm(self, key: str) -> str:
        """Keep one worker of the endpoint warm (a no-op job every idle timeout minus a margin,
        stopping by itself after an idle limit, like `podtui serve --keep-warm`), or stop doing
        it. Returns what it does and what it costs."""
        raise NotAvailable("keep-alive")

    def delete_endpoint(self, key: str) -> str:
        """Delete the endpoint and the template bound to it (the screen asks for its name first)."""
        raise NotAvailable("delete")

    def endpoint_log_follower(self, key: str) -> LineFollower:
        """The endpoint's workers' logs (every active worker, new ones as they come)."""
        return UnavailableFollower(key, NotAvailable("the endpoint's log"))

    def close(self) -> None:
        """Let go of tunnels and connections (called when the app exits)."""

    def log_follower(self, key: str | None) -> LineFollower:
        """The pod's engine/agent log; with no pod, podtui's own log."""
        if key is None:
            return FileFollower(paths.log_dir() / "podtui.log", title="podtui's own log")
        return UnavailableFollower(key, NotAvailable("the pod's log"))


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(title, fix) for the error dialog; unknown exceptions get a generic fix."""
    if isinstance(exc, PodtuiError):
        return exc.title, exc.fix
    return f"{type(exc).__name__}: {exc}", "this is a bug in podtui: please report it with the log"
