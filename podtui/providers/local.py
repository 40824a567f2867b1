"""The local pod: `remote-agent daemon` and its engine on this machine (a GPU at home, or none).

It is always listed (id `local`), STOPPED until `podtui local start`, so podtui has something real
to show with no cloud account. Its agent is reached through a local bridge (`local_daemon.py`);
its engine listens on 127.0.0.1:PORT here, so it needs no tunnel and no host key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from podtui.errors import PodtuiError
from podtui.providers.agent_pod import agent_log_lines, pod_from_status
from podtui.providers.base import (UNREACHABLE, GpuType, LogLine, Pod, PodNotFound, PodSpec, Provider,
                                   ProviderError, Reach)
from podtui.providers.local_daemon import SEED_NAMES, LocalDaemon, LocalSettings

LOCAL_ID = "local"
STOPPED = "STOPPED"


def spec_env(spec: PodSpec) -> dict[str, str]:
    """The daemon's seed environment for a spec (no PORT: the settings carry it)."""
    env = {k: v for k, v in spec.env().items() if k in ("MODEL", "CTX", "ENGINE", "ARGS", "HF_TOKEN")}
    return env


class LocalProvider(Provider):
    name = "local"
    reach = Reach.LOCAL

    def __init__(self, daemon: LocalDaemon | None = None) -> None:
        self.daemon = daemon or LocalDaemon()

    def base_url(self, pod: Pod | None = None) -> str:
        port = pod.engine_port if pod is not None else self.daemon.settings().port
        return f"http://127.0.0.1:{port}/v1"

    def _check(self, pod_id: str) -> None:
        if pod_id != LOCAL_ID:
            raise PodNotFound(f"the local provider has one pod, {LOCAL_ID!r}, not {pod_id!r}",
                              "run `podtui pods` to see the pods")

    def status(self) -> dict:
        """The agent's `status` (contract B); ProviderError when the daemon is not running."""
        if not self.daemon.running():
            raise ProviderError("the local pod is not running", "start it: podtui local start --model MODEL")
        client = self.daemon.client()
        try:
            return client.call("status", timeout=10)
        finally:
            client.close()

    def get_pod(self, pod_id: str = LOCAL_ID) -> Pod:
        self._check(pod_id)
        port = self.daemon.settings().port
        if not self.daemon.running():
            return Pod(id=LOCAL_ID, name="this machine", provider=self.name, status=STOPPED, engine_port=port,
                       detail="start it with `podtui local start --model MODEL`")
        try:
            status = self.status()
        except PodtuiError as exc:
            return Pod(id=LOCAL_ID, name="this machine", provider=self.name, status=UNREACHABLE,
                       engine_port=port, detail=exc.title)
        pod = pod_from_status(LOCAL_ID, self.name, status if isinstance(status, dict) else {})
        return replace(pod, name="this machine")

    def list_pods(self) -> list[Pod]:
        return [self.get_pod(LOCAL_ID)]

    def find_pod(self, ref: str) -> Pod:
        return self.get_pod(ref)

    def start(self, spec: PodSpec | None = None, *, models_dir: str | None = None,
              engine_bin_dir: str | None = None, port: int | None = None, api_key: str | None = None,
              timeout_s: float = 20.0) -> Pod:
        """Start the daemon (with MODEL etc. from spec, which it then serves); settings not given
        are those of the last start. api_key: the engine's key for this start only (API_KEY;
        "none" for no key); by default the daemon's own, generated once in its state dir."""
        previous = self.daemon.settings()
        env = spec_env(spec) if spec is not None else {}
        if api_key is not None:
            env["API_KEY"] = api_key   # passed like HF_TOKEN: never saved in daemon.json
        # A new MODEL replaces the last start's seed; without one the daemon restores its last config.
        seed = {k: v for k, v in env.items() if k in SEED_NAMES} if env.get("MODEL") else previous.seed_env
        settings = LocalSettings(models_dir or previous.models_dir,
                                 port or (spec.port if spec is not None else previous.port),
                                 engine_bin_dir if engine_bin_dir is not None else previous.engine_bin_dir,
                                 seed)
        self.daemon.start(settings, {k: v for k, v in env.items() if k not in SEED_NAMES}, timeout_s)
        return self.get_pod(LOCAL_ID)

    def create_pod(self, spec: PodSpec) -> Pod:
        return self.start(spec, port=spec.port)

    def stop_pod(self, pod_id: str = LOCAL_ID) -> Pod:
        """Stops the daemon, which stops its engine first; the last good config stays saved."""
        self._check(pod_id)
        self.daemon.stop()
        return self.get_pod(LOCAL_ID)

    def resume_pod(self, pod_id: str = LOCAL_ID) -> Pod:
        """Starts the daemon again; it restarts the last good config it saved."""
        self._check(pod_id)
        return self.start()

    def terminate_pod(self, pod_id: str) -> None:
        raise ProviderError("the local pod is this machine: it is stopped, not terminated",
                            "podtui local stop (models stay in the models dir; delete them with "
                            "`podtui agent local models` / models.delete)")

    def logs(self, pod_id: str = LOCAL_ID, tail: int = 100, follow: bool = False) -> Iterator[LogLine]:
        self._check(pod_id)
        if not self.daemon.running():
            raise ProviderError("the local pod is not running", "start it: podtui local start --model MODEL")
        client = self.daemon.client()
        try:
            yield from agent_log_lines(client, tail, follow)
        finally:
            client.close()

    def gpu_catalog(self) -> list[GpuType]:
        return []  # this machine's GPUs are what they are: see `podtui agent local status`

    def cost_per_hr(self, pod: Pod) -> float:
        return 0.0
