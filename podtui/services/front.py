"""What the TUI asks of the rest of podtui, in one place.

The screens call only these methods, always from worker threads (they may block on the network).
`TuiServices` is the seam: `build_app(services=…)` takes any implementation, so the CLI passes the
real one built on podtui.services and the tests pass one backed by the test bed. A method the
backing parts cannot do yet raises NotBuiltYet, which the app shows as a dialog with the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from podtui.errors import NotBuiltYet, PodtuiError
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
    idle_minutes: float | None = None  # no requests for this long (None: unknown)

    @property
    def running(self) -> bool:
        return self.status.upper() == "RUNNING"


@dataclass
class PodListing:
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
    name: str
    size_bytes: int
    quant: str = ""
    last_used: str = ""


@dataclass(frozen=True)
class GpuChoice:
    name: str
    memory_gb: float
    price_per_hour: float | None
    available: bool = True


ProgressCallback = Callable[[str, float | None, str], None]   # phase, fraction, detail


class TuiServices:
    """Everything the screens do. Defaults say honestly that the part is not wired yet."""

    def list_pods(self) -> PodListing:
        return PodListing(problems=["no pod providers are wired in yet (issue #6)"])

    def stop(self, key: str) -> str:
        raise NotBuiltYet("stop", 6)

    def resume(self, key: str) -> str:
        raise NotBuiltYet("resume", 6)

    def terminate(self, key: str) -> str:
        raise NotBuiltYet("terminate", 6)

    def toggle_tunnel(self, key: str) -> str:
        raise NotBuiltYet("tunnel", 4)

    def host_key_check(self, key: str) -> HostKeyCheck:
        raise NotBuiltYet("hostkey", 4)

    def pin_host_key(self, key: str, check: HostKeyCheck, *, verified: bool) -> str:
        raise NotBuiltYet("hostkey", 4)

    def models_on_pod(self, key: str) -> list[ModelOnPod]:
        raise NotBuiltYet("agent models", 3)

    def swap_model(self, key: str, model: str, progress: ProgressCallback) -> str:
        raise NotBuiltYet("agent swap", 3)

    def context_fit(self, key: str) -> str:
        raise NotBuiltYet("agent fit", 7)

    def gpu_catalog(self) -> list[GpuChoice]:
        raise NotBuiltYet("launch", 6)

    def preflight_fit(self, model: str, gpu_name: str) -> str:
        """One line: "fits at about N tokens on <GPU>" (the pre-flight of issue #7)."""
        raise NotBuiltYet("pre-flight fit", 7)

    def launch(self, spec: dict, progress: ProgressCallback) -> str:
        raise NotBuiltYet("launch", 6)

    def close(self) -> None:
        """Let go of tunnels and connections (called when the app exits)."""

    def log_follower(self, key: str | None) -> LineFollower:
        """The pod's engine/agent log; with no pod, podtui's own log."""
        if key is None:
            return FileFollower(paths.log_dir() / "podtui.log", title="podtui's own log")
        return UnavailableFollower(key, PodtuiError(
            "pod logs need the agent client, which is not wired in yet (issues #3, #4)",
            "use `podtui agent TARGET logs -f` once it lands"))


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(title, fix) for the error dialog; unknown exceptions get a generic fix."""
    if isinstance(exc, PodtuiError):
        return exc.title, exc.fix
    return f"{type(exc).__name__}: {exc}", "this is a bug in podtui: please report it with the log"
