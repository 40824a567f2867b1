"""What every pod provider offers (Runpod, any SSH host, this machine), and the shapes it returns.

A provider answers in these dataclasses only, so the CLI, the TUI and PodService never see a
provider's wire format. Secrets a pod was created with (HF_TOKEN, API keys) may sit in `Pod.env`;
that field is kept out of reprs and `Pod.as_dict()` shows only that such a value is set.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from podtui.errors import PodtuiError

DEFAULT_ENGINE_PORT = 5002  # the image's PORT default (seed 000)

# The engine's API key (remote_agent/engine_key.py); "none" opts out and is no secret.
ENGINE_KEY_NAMES = frozenset({"API_KEY", "LLAMA_API_KEY"})
# Env names whose values are secrets: never printed, logged or repr'd.
SECRET_ENV_NAMES = frozenset({"HF_TOKEN", "RUNPOD_API_KEY", "HUGGING_FACE_HUB_TOKEN", "PUBLIC_KEY_PASSPHRASE",
                              "JUPYTER_PASSWORD", *ENGINE_KEY_NAMES})

ProgressCallback = Callable[[str, str], None]  # phase, human-readable detail
UNREACHABLE = "UNREACHABLE"   # the status of a pod whose agent did not answer (SSH hosts, local)


def _key_opt_out(name: str, value: str) -> bool:
    return name in ENGINE_KEY_NAMES and value.strip().lower() == "none"


class Reach(enum.Enum):
    """How a provider's pods are reached: declared by each provider, read by podtui.services
    (the one place that opens connections) instead of guessing from the provider's type."""

    POD_SSH = "pod-ssh"      # the pod's own sshd, pinned from the host keys its log printed (`podtui-<id>`)
    HOST_SSH = "host-ssh"    # an added host: its own identity and agent command, pinned as `[host]:port`
    LOCAL = "local"          # this machine: a local `remote-agent rpc` bridge, no SSH, no tunnel


class ProviderError(PodtuiError):
    """A provider could not do what was asked; title and fix are in plain words."""


class PodNotFound(ProviderError):
    pass


@dataclass(frozen=True)
class SshEndpoint:
    """Where the pod's own sshd listens, reached directly (never through a provider's proxy)."""

    host: str
    port: int
    user: str


@dataclass(frozen=True)
class GpuType:
    name: str                 # the id a create call takes, e.g. "NVIDIA GeForce RTX 4090"
    memory_gib: float
    price_per_hr: float | None
    display_name: str = ""


@dataclass(frozen=True)
class Pod:
    id: str
    name: str
    provider: str
    status: str                               # provider's word: RUNNING, EXITED, …
    gpu: str = ""
    gpu_count: int = 0
    price_per_hr: float | None = None         # what the provider bills now (0 when stopped)
    image: str = ""
    ssh: SshEndpoint | None = None            # None until the pod has a public port-22 mapping
    engine_port: int = DEFAULT_ENGINE_PORT
    uptime_s: float | None = None
    created_at: str | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    detail: str = ""                          # why it is in this status (an SSH host's reason, …)
    idle_s: float | None = None               # the agent's seconds without a request (None: unknown)

    @property
    def running(self) -> bool:
        return self.status.upper() == "RUNNING"

    def public_env(self) -> dict[str, str]:
        """The env with secret values replaced by a marker (for output)."""
        return {k: ("<set, hidden>" if k in SECRET_ENV_NAMES and not _key_opt_out(k, v) else v)
                for k, v in self.env.items()}

    def as_dict(self) -> dict:
        return {
            "id": self.id, "name": self.name, "provider": self.provider, "status": self.status,
            "gpu": self.gpu, "gpu_count": self.gpu_count, "price_per_hr": self.price_per_hr,
            "image": self.image,
            "ssh": None if self.ssh is None else {"host": self.ssh.host, "port": self.ssh.port,
                                                  "user": self.ssh.user},
            "engine_port": self.engine_port, "uptime_s": self.uptime_s, "created_at": self.created_at,
            "model": self.env.get("MODEL", ""), "env": self.public_env(), "detail": self.detail,
            "idle_s": self.idle_s,
        }


@dataclass(frozen=True)
class PodSpec:
    """What to launch. `env()` is the image's seed-compatible environment."""

    gpu: str
    model: str = ""
    name: str = "podtui"
    gpu_count: int = 1
    ctx: str | None = None                   # a number or "auto"
    engine: str | None = None                # llama-server (default in the image) or koboldcpp
    args: str | None = None
    port: int = DEFAULT_ENGINE_PORT
    idle_stop_minutes: float | None = None
    volume_gb: int | None = 50               # persistent volume for models and host keys
    network_volume_id: str | None = None     # instead of volume_gb
    volume_path: str = "/workspace"
    container_disk_gb: int = 20
    image: str = ""
    cloud: str = "SECURE"
    ssh_public_key: str | None = None        # PUBLIC_KEY; else the account's registered keys
    hf_token: str | None = field(default=None, repr=False)
    extra_env: dict[str, str] = field(default_factory=dict, repr=False)

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.model:
            env["MODEL"] = self.model
        if self.ctx is not None:
            env["CTX"] = str(self.ctx)
        if self.engine:
            env["ENGINE"] = self.engine
        if self.args:
            env["ARGS"] = self.args
        env["PORT"] = str(self.port)
        if self.idle_stop_minutes is not None:
            minutes = self.idle_stop_minutes
            env["IDLE_STOP_MINUTES"] = str(int(minutes)) if float(minutes).is_integer() else str(minutes)
        if self.ssh_public_key:
            env["PUBLIC_KEY"] = self.ssh_public_key
        env.update(self.extra_env)
        if self.hf_token:
            env["HF_TOKEN"] = self.hf_token
        return env


@dataclass(frozen=True)
class LogLine:
    line: str
    ts: str = ""
    source: str = ""
    event_id: str = ""


class Provider(abc.ABC):
    """One place pods live. Methods may block on the network; callers run them off the UI thread.

    A provider describes its pods; it never opens an SSH connection itself (podtui.services does,
    guided by the capabilities below).
    """

    name: str = "provider"
    reach: Reach = Reach.POD_SSH
    can_launch: bool = False            # create_pod works (it rents a machine)
    prints_host_keys: bool = False      # logs() carries the boot's printed host-key block (out of band)

    @abc.abstractmethod
    def list_pods(self) -> list[Pod]: ...

    @abc.abstractmethod
    def get_pod(self, pod_id: str) -> Pod:
        """The pod, or PodNotFound."""

    @abc.abstractmethod
    def create_pod(self, spec: PodSpec) -> Pod: ...

    @abc.abstractmethod
    def stop_pod(self, pod_id: str) -> Pod: ...

    @abc.abstractmethod
    def resume_pod(self, pod_id: str) -> Pod: ...

    @abc.abstractmethod
    def terminate_pod(self, pod_id: str) -> None: ...

    @abc.abstractmethod
    def logs(self, pod_id: str, tail: int = 100, follow: bool = False) -> Iterator[LogLine]:
        """The last `tail` lines, then (follow=True) new lines until the caller stops iterating."""

    @abc.abstractmethod
    def gpu_catalog(self) -> list[GpuType]: ...

    def ssh_endpoint(self, pod: Pod) -> SshEndpoint | None:
        return pod.ssh

    def engine_port(self, pod: Pod) -> int:
        return pod.engine_port

    def cost_per_hr(self, pod: Pod) -> float:
        """What the pod costs per hour right now (0 when it is not running)."""
        return float(pod.price_per_hr or 0.0) if pod.running else 0.0

    def find_pod(self, ref: str) -> Pod:
        """A pod by id, else by exact name (a name shared by several pods is ambiguous)."""
        pods = self.list_pods()
        for pod in pods:
            if pod.id == ref:
                return pod
        named = [pod for pod in pods if pod.name == ref]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            ids = ", ".join(pod.id for pod in named)
            raise ProviderError(f"{len(named)} pods are named {ref!r} ({ids})", "name the pod by its id")
        raise PodNotFound(f"no pod with id or name {ref!r} on {self.name}",
                          "run `podtui pods` to see the pods and their ids")
