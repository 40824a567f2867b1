"""Runpod through its REST v2 API (the spec: openapi-v2.json): pods, actions, logs, GPU catalog.

The API key comes from RUNPOD_API_KEY, else podtui's config file ([runpod] api_key), else
`~/.runpod/config.toml` (runpodctl's `apikey` or runpod-python's `[default] api_key`).

SSH goes only to the pod's own sshd through its public `22/tcp` mapping (`ssh.direct`, or the
runtime port list). Runpod's SSH proxy (ssh.runpod.io) and HTTP proxy are never used: they sit
in the middle of the connection, which is exactly what the printed host keys protect against.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

from podtui.config import Config, load_config, permission_warning
from podtui.image_ref import published_image
from podtui.providers.base import (DEFAULT_ENGINE_PORT, GpuType, LogLine, Pod, PodNotFound, PodSpec, Provider,
                                   ProviderError, SshEndpoint)
from podtui.providers.runpod_api import (API_KEY_FIX, DEFAULT_API_URL, ApiKey, MalformedResponse,
                                         RetryPolicy, RunpodApi)

API_URL_ENV = "PODTUI_RUNPOD_API_URL"
IMAGE_ENV = "PODTUI_IMAGE"
PROXY_HOSTS = ("ssh.runpod.io", "proxy.runpod.net")
LOG_TAIL_MAX = 5000  # the spec's maximum backfill
POD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class NoApiKey(ProviderError):
    pass


def _runpod_cli_key(home: Path, warnings: list[str]) -> ApiKey | None:
    path = home / ".runpod" / "config.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    value = data.get("apikey") or data.get("api_key")
    if not value and isinstance(data.get("default"), dict):
        value = data["default"].get("api_key") or data["default"].get("apikey")
    if isinstance(value, str) and value.strip():
        warning = permission_warning(path)
        if warning:
            warnings.append(warning)
        return ApiKey(value, str(path))
    return None


def find_api_key(config: Config | None = None, home: Path | None = None,
                 warnings: list[str] | None = None) -> ApiKey | None:
    """The first key found: RUNPOD_API_KEY, podtui's config file, ~/.runpod/config.toml."""
    warnings = warnings if warnings is not None else []
    value = os.environ.get("RUNPOD_API_KEY", "").strip()
    if value:
        return ApiKey(value, "RUNPOD_API_KEY")
    config = config if config is not None else load_config()
    value = config.get("runpod", "api_key")
    if isinstance(value, str) and value.strip():
        return ApiKey(value, str(config.path))
    return _runpod_cli_key(home or Path.home(), warnings)


def _is_proxy(host: str) -> bool:
    return any(host == p or host.endswith("." + p) for p in PROXY_HOSTS)


def _direct_ssh(data: dict) -> SshEndpoint | None:
    ssh = data.get("ssh")
    direct = ssh.get("direct") if isinstance(ssh, dict) else None
    if isinstance(direct, dict) and direct.get("host") and direct.get("port") and not _is_proxy(str(direct["host"])):
        return SshEndpoint(str(direct["host"]), int(direct["port"]), str(direct.get("username") or "root"))
    runtime = data.get("runtime")
    for port in (runtime or {}).get("ports") or []:
        if (isinstance(port, dict) and port.get("private") == 22 and port.get("public") and port.get("ip")
                and port.get("type", "tcp") == "tcp" and not _is_proxy(str(port["ip"]))):
            return SshEndpoint(str(port["ip"]), int(port["public"]), "root")
    return None


def pod_from_json(data: object) -> Pod:
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("status"), str):
        raise MalformedResponse("Runpod sent a pod podtui cannot read (no id or status)",
                                "try again; if it persists the API may have changed")
    if not POD_ID.fullmatch(data["id"]):
        # the id becomes a known_hosts name (podtui-<id>) and a URL path: it must be a plain word
        raise MalformedResponse(f"Runpod sent a pod id podtui will not use: {data['id'][:80]!r}",
                                "pod ids are letters, digits, '-' and '_'; report this if it persists")
    env = data.get("env") if isinstance(data.get("env"), dict) else {}
    env = {str(k): str(v) for k, v in env.items()}
    try:
        engine_port = int(env.get("PORT") or DEFAULT_ENGINE_PORT)
    except ValueError:
        engine_port = DEFAULT_ENGINE_PORT
    gpu = data.get("gpu") if isinstance(data.get("gpu"), dict) else {}
    runtime = data.get("runtime") if isinstance(data.get("runtime"), dict) else {}
    cost = data.get("cost")
    return Pod(
        id=data["id"], name=str(data.get("name") or ""), provider="runpod", status=data["status"],
        gpu=str(gpu.get("id") or ""), gpu_count=int(gpu.get("count") or (1 if gpu else 0)),
        price_per_hr=float(cost) if isinstance(cost, (int, float)) else None,
        image=str(data.get("image") or ""), ssh=_direct_ssh(data), engine_port=engine_port,
        uptime_s=float(runtime["uptime"]) if isinstance(runtime.get("uptime"), (int, float)) else None,
        created_at=data.get("createdAt"), env=env,
    )


def create_body(spec: PodSpec, image: str) -> dict:
    body: dict = {
        "name": spec.name,
        "image": image,
        "gpu": {"id": spec.gpu, "count": spec.gpu_count},
        "cloud": spec.cloud,
        # 22/tcp only: the engine listens on the pod's 127.0.0.1 and is reached through the
        # verified SSH tunnel. A public mapping of PORT would reach nothing, and would invite the
        # proxy route (`/http`) podtui exists to avoid (seed 000 step 3).
        "ports": ["22/tcp"],
        "env": spec.env(),
        "disk": spec.container_disk_gb,
        # Runpod injects the account's registered SSH keys as PUBLIC_KEY (unless env sets one).
        "startSsh": True,
        # Never Runpod's Jupyter: it adds a public port behind Runpod's HTTP proxy. `--jupyter` sets JUPYTER=1
        # instead, and the image's Jupyter listens on the pod's 127.0.0.1 only (remote_agent/jupyter.py).
        "startJupyter": False,
    }
    if spec.network_volume_id:
        body["mounts"] = {"network": [{"volumeId": spec.network_volume_id, "path": spec.volume_path}]}
    elif spec.volume_gb:
        body["mounts"] = {"persistent": {"size": spec.volume_gb, "path": spec.volume_path}}
    return body


class RunpodProvider(Provider):
    name = "runpod"
    can_launch = True
    prints_host_keys = True

    def __init__(self, api: RunpodApi, image: str = "", *, log_quiet_s: float = 2.0) -> None:
        self.api = api
        self.image = image
        self.log_quiet_s = log_quiet_s  # a log backfill is over when the stream is quiet this long

    def __repr__(self) -> str:
        return f"RunpodProvider({self.api!r})"

    @classmethod
    def from_environment(cls, config: Config | None = None, *, retry: RetryPolicy | None = None,
                         timeout_s: float | None = None, on_wait: Callable[[str], None] | None = None,
                         warnings: list[str] | None = None) -> "RunpodProvider":
        config = config if config is not None else load_config()
        if warnings is not None:
            warnings.extend(config.warnings)
        key = find_api_key(config, warnings=warnings)
        if key is None:
            raise NoApiKey("no Runpod API key is configured", API_KEY_FIX)
        url = os.environ.get(API_URL_ENV) or config.get("runpod", "api_url") or DEFAULT_API_URL
        timeout = timeout_s or float(os.environ.get("PODTUI_RUNPOD_TIMEOUT_S") or config.get("runpod", "timeout_s") or 30)
        image = os.environ.get(IMAGE_ENV) or config.get("runpod", "image") or published_image() or ""
        if retry is None and os.environ.get("PODTUI_RUNPOD_BACKOFF_S"):  # tests shorten the waits
            retry = RetryPolicy(backoff_s=float(os.environ["PODTUI_RUNPOD_BACKOFF_S"]), max_retry_after_s=5.0)
        quiet = float(os.environ.get("PODTUI_RUNPOD_LOG_QUIET_S") or 2.0)
        return cls(RunpodApi(key, url, timeout_s=timeout, retry=retry, on_wait=on_wait), image=image,
                   log_quiet_s=quiet)

    # -- pods --------------------------------------------------------------------------------

    def list_pods(self, include_cluster_pods: bool = False) -> list[Pod]:
        """`GET /v2/pods`; Instant Cluster members only with include_cluster_pods (the spec hides them)."""
        params = {"includeClusterPods": "true"} if include_cluster_pods else None
        data = self.api.call("GET", "/v2/pods", params=params, what="listing pods")
        if not isinstance(data, dict) or not isinstance(data.get("pods"), list):
            raise MalformedResponse("Runpod sent a pod list podtui cannot read", "try again in a minute")
        return [pod_from_json(item) for item in data["pods"]]

    def find_pod(self, ref: str) -> Pod:
        """Provider.find_pod; an Instant Cluster member, hidden from the pod list, is found by its id
        (`GET /v2/pods/{id}` returns it), so `podtui tunnel POD` and `cluster status` reach members too."""
        try:
            return super().find_pod(ref)
        except PodNotFound as missing:
            if not POD_ID.fullmatch(ref):
                raise
            try:
                return self.get_pod(ref)
            except PodNotFound:
                raise missing from None

    def get_pod(self, pod_id: str) -> Pod:
        return pod_from_json(self.api.call("GET", f"/v2/pods/{_path_id(pod_id)}", what=f"reading pod {pod_id}"))

    def create_pod(self, spec: PodSpec) -> Pod:
        image = spec.image or self.image
        if not image:
            raise ProviderError(
                "no pod image is configured",
                "build and push podtui's image (image/README.md), then pass --image REF, set "
                f"{IMAGE_ENV}, or put image = \"REF\" under [runpod] in podtui's config file",
            )
        # Not idempotent: a timed-out create is not retried blindly (it would start a second pod).
        data = self.api.call("POST", "/v2/pods", body=create_body(spec, image), what="creating the pod",
                             idempotent=False)
        return pod_from_json(data)

    def _action(self, pod_id: str, action: str, verb: str) -> object:
        return self.api.call("POST", f"/v2/pods/{_path_id(pod_id)}/action", body={"action": action},
                             what=f"{verb} pod {pod_id}")

    def stop_pod(self, pod_id: str) -> Pod:
        return pod_from_json(self._action(pod_id, "stop", "stopping"))

    def resume_pod(self, pod_id: str) -> Pod:
        return pod_from_json(self._action(pod_id, "start", "resuming"))

    def terminate_pod(self, pod_id: str) -> None:
        self.api.call("DELETE", f"/v2/pods/{_path_id(pod_id)}", what=f"terminating pod {pod_id}")

    # -- logs and catalog --------------------------------------------------------------------

    def logs(self, pod_id: str, tail: int = 100, follow: bool = False, *, max_read_s: float = 15.0,
             source: str | None = "container") -> Iterator[LogLine]:
        """The pod log from `GET /v2/pods/{id}/logs` (SSE). Without follow the backfill ends when
        the stream goes quiet for log_quiet_s (or after max_read_s on a chatty pod)."""
        params: dict = {"tail": max(0, min(int(tail), LOG_TAIL_MAX))}
        if source:
            params["source"] = source
        events = self.api.stream_events(
            f"/v2/pods/{_path_id(pod_id)}/logs", params=params,
            read_timeout_s=3600.0 if follow else self.log_quiet_s, max_duration_s=None if follow else max_read_s,
            what=f"reading pod {pod_id}'s log")
        for event in events:
            yield _log_line(event.data, event.event_id)

    def gpu_catalog(self) -> list[GpuType]:
        data = self.api.call("GET", "/v2/catalog/gpus", what="reading the GPU catalog")
        if not isinstance(data, dict) or not isinstance(data.get("gpus"), list):
            raise MalformedResponse("Runpod sent a GPU catalog podtui cannot read", "try again in a minute")
        gpus = []
        for item in data["gpus"]:
            if not isinstance(item, dict) or "id" not in item:
                continue
            price = item.get("price") if isinstance(item.get("price"), dict) else {}
            per_hr = price.get("secure") if item.get("secure") else price.get("community")
            gpus.append(GpuType(str(item["id"]), float(item.get("memory") or 0),
                                float(per_hr) if isinstance(per_hr, (int, float)) else None,
                                str(item.get("name") or "")))
        return sorted(gpus, key=lambda g: (g.price_per_hr is None, g.price_per_hr or 0, g.name))


def _path_id(pod_id: str) -> str:
    """Pod ids go into URL paths: refuse anything but a plain id."""
    if not POD_ID.fullmatch(pod_id):
        raise ProviderError(f"{pod_id!r} is not a Runpod pod id", "run `podtui pods` to see the ids")
    return pod_id


def _log_line(data: str, event_id: str) -> LogLine:
    try:
        payload = json.loads(data)
    except ValueError:
        return LogLine(data, event_id=event_id)  # a plain-text data line: keep it, it may be the block
    if not isinstance(payload, dict):
        return LogLine(str(payload), event_id=event_id)
    return LogLine(str(payload.get("line", "")), ts=str(payload.get("ts", "")),
                   source=str(payload.get("source", "")), event_id=event_id)
