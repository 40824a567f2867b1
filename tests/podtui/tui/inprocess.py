"""An in-process TuiServices for screen tests: pods kept in memory, behaving like a provider.

Used where the real part is not built yet (see the report of issue #8): the screens are tested
against the same TuiServices interface the real wiring implements. It is not a stand-in for a
network service; every behaviour here is the TUI's own contract (what a call returns or raises).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from podtui.errors import PodtuiError
from podtui.services.follow import IterableFollower, LineFollower
from podtui.services.front import (EndpointListing, EndpointRow, GpuChoice, HostKeyCheck, ModelOnPod,
                                   PodListing, PodRow, TuiServices)

PRESENTED = "SHA256:3Q0cUwjWQ5V7xWbVjBc0v8yQb6xv6n0b7g0m3ucUo3A"
OTHER = "SHA256:ZZ0cUwjWQ5V7xWbVjBc0v8yQb6xv6n0b7g0m3ucUoZZ"


def sample_pods() -> list[PodRow]:
    return [
        PodRow(key="runpod:abc123", name="llama-70b", provider="runpod", status="RUNNING",
               gpu="H100 80GB", price_per_hour=2.69, uptime_s=3 * 3600 + 120,
               model="bartowski/Llama-3.3-70B-Instruct-GGUF:Q4_K_M", ctx=32768,
               engine_state="ready", tunnel_url="http://127.0.0.1:5002/v1", idle_minutes=45),
        PodRow(key="runpod:def456", name="qwen-small", provider="runpod", status="EXITED",
               gpu="RTX 4090", price_per_hour=0.69, model="Qwen/Qwen2.5-7B-Instruct-GGUF",
               ctx=8192, engine_state="stopped"),
        PodRow(key="ssh:root@127.0.0.1:2222", name="homebox", provider="ssh",
               status="RUNNING", gpu="RTX 3090", uptime_s=50 * 3600, model="tiny-a",
               ctx=2048, engine_state="ready"),
    ]


class InProcessServices(TuiServices):
    def __init__(self, pods: list[PodRow] | None = None) -> None:
        self.pods = {pod.key: pod for pod in (sample_pods() if pods is None else pods)}
        self.calls: list[tuple] = []
        self.block_listing = threading.Event()   # set → list_pods blocks until released
        self.release = threading.Event()
        self.printed: str | None = PRESENTED
        self.pins: dict[str, tuple[str, bool]] = {}
        self.swap_fails_with: PodtuiError | None = None
        self.log_lines: list[str] = [f"line {i}" for i in range(50)]

    def list_pods(self) -> PodListing:
        self.calls.append(("list_pods",))
        if self.block_listing.is_set():
            self.release.wait()
        return PodListing(rows=list(self.pods.values()))

    def _set_status(self, key: str, status: str) -> str:
        self.pods[key] = replace(self.pods[key], status=status)
        return f"{self.pods[key].name} is {status}"

    def stop(self, key: str) -> str:
        self.calls.append(("stop", key))
        return self._set_status(key, "EXITED")

    def resume(self, key: str) -> str:
        self.calls.append(("resume", key))
        return self._set_status(key, "RUNNING")

    def terminate(self, key: str) -> str:
        self.calls.append(("terminate", key))
        name = self.pods.pop(key).name
        return f"{name} terminated"

    def toggle_tunnel(self, key: str) -> str:
        raise PodtuiError("local port 5002 is busy", "stop what listens there or pick -L 5003")

    def host_key_check(self, key: str) -> HostKeyCheck:
        return HostKeyCheck(pod_name=self.pods[key].name, key_type="ssh-ed25519",
                            presented=PRESENTED, printed=self.printed)

    def pin_host_key(self, key: str, check: HostKeyCheck, *, verified: bool) -> str:
        self.pins[key] = (check.presented, verified)
        return f"pinned {check.presented} ({'verified' if verified else 'UNVERIFIED'})"

    def models_on_pod(self, key: str) -> list[ModelOnPod]:
        return [ModelOnPod("tiny-a.gguf", 17_000_000, "F16", "2026-11-20"),
                ModelOnPod("tiny-b.gguf", 36_000_000, "Q8_0", "")]

    def swap_model(self, key: str, model: str, progress) -> str:
        self.calls.append(("swap", key, model))
        for phase in ("download", "fit", "load"):
            for step in range(1, 5):
                progress(phase, step / 4, "")
                time.sleep(0.005)
        if self.swap_fails_with:
            raise self.swap_fails_with
        self.pods[key] = replace(self.pods[key], model=model)
        return f"{model} is serving"

    def gpu_catalog(self) -> list[GpuChoice]:
        return [GpuChoice("NVIDIA H100 80GB HBM3", 80, 2.69), GpuChoice("RTX 4090", 24, 0.69)]

    def log_follower(self, key: str | None) -> LineFollower:
        lines = list(self.log_lines)
        return IterableFollower(lambda: iter(lines), title=f"logs of {key}")


def sample_endpoints() -> list[EndpointRow]:
    return [
        EndpointRow(key="ep4m7x2k9q", name="llama-serverless", state="warm",
                    workers={"idle": 1, "running": 1, "initializing": 0, "throttled": 0, "unhealthy": 0},
                    queue=0, pools=("ADA_24", "AMPERE_48"), price_per_worker_hr=1.22, workers_min=0,
                    workers_max=3, idle_timeout_s=120, model="bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M",
                    keep_warm="on · 8m left"),
        EndpointRow(key="ep9z8y7x6w", name="qwen-cold", state="cold",
                    workers={"idle": 0, "running": 0, "initializing": 0, "throttled": 0, "unhealthy": 0},
                    queue=2, pools=("ADA_24",), price_per_worker_hr=1.1, workers_min=0, workers_max=2,
                    idle_timeout_s=5, model="Qwen/Qwen2.5-7B-Instruct-GGUF",
                    diagnosis="no worker allocated yet: Runpod starts a worker once a job waits longer "
                              "than the queue delay"),
        EndpointRow(key="epold00001", name="forgotten", state="cold", workers={}, queue=None,
                    pools=("AMPERE_48",), price_per_worker_hr=None, workers_min=0, workers_max=0,
                    idle_timeout_s=60, model="org/repo:Q8_0",
                    warnings=(("max workers is 0, so no job will ever run: Runpod sets it to 0 after 7 days "
                               "without requests and it stays; fix: podtui endpoints update epold00001 "
                               "--workers-max 3"),)),
    ]


class EndpointsInProcess(InProcessServices):
    """InProcessServices with Runpod Serverless endpoints (their listing and delete) for the screens."""

    offers_endpoints = True

    def __init__(self, pods: list[PodRow] | None = None, endpoints: list[EndpointRow] | None = None) -> None:
        super().__init__(pods)
        self.endpoints = {row.key: row for row in (sample_endpoints() if endpoints is None else endpoints)}

    def list_endpoints(self) -> EndpointListing:
        self.calls.append(("list_endpoints",))
        return EndpointListing(rows=list(self.endpoints.values()))

    def delete_endpoint(self, key: str) -> str:
        self.calls.append(("delete_endpoint", key))
        return f"endpoint {key} ({self.endpoints.pop(key).name}) deleted, with the template bound to it"
