"""A pod described by its agent: the shared half of the SSH-host and local providers.

Both reach `remote-agent` (over SSH, or through a local bridge) and build their `Pod` rows from its
`status` answer (contract B), so a host the user added and this machine look like any other pod.
"""

from __future__ import annotations

from collections.abc import Iterator

from podtui.providers.base import DEFAULT_ENGINE_PORT, LogLine, Pod, SshEndpoint
from podtui.agent.client import AgentClient

RUNNING = "RUNNING"


def engine_summary(status: dict) -> str:
    """`engine ready: tiny-a.gguf, ctx 2048` / `engine stopped` / `engine failed: oom: …`."""
    state = status.get("state") or "unknown"
    text = f"engine {state}"
    model = status.get("model")
    if model:
        text += f": {model}" + (f", ctx {status['ctx']}" if status.get("ctx") else "")
    error = status.get("last_error")
    if state in ("failed", "paused") and isinstance(error, dict):
        text += f" ({error.get('kind')}: {error.get('message')})"
    return text


def pod_from_status(pod_id: str, provider: str, status: dict, ssh: SshEndpoint | None = None) -> Pod:
    """A reachable agent's pod: RUNNING (the machine is up), the engine's state in `detail`."""
    gpus = status.get("gpus") or []
    env: dict[str, str] = {}
    if status.get("model"):
        env["MODEL"] = str(status["model"])
    if status.get("ctx"):
        env["CTX"] = str(status["ctx"])
    if status.get("engine"):
        env["ENGINE"] = str(status["engine"])
    port = status.get("port")
    idle = status.get("idle_s")
    return Pod(id=pod_id, name=pod_id, provider=provider, status=RUNNING,
               gpu=str(gpus[0].get("name") or "") if gpus else "", gpu_count=len(gpus), price_per_hr=None,
               ssh=ssh, engine_port=int(port) if isinstance(port, int) else DEFAULT_ENGINE_PORT,
               uptime_s=status.get("uptime_s") if isinstance(status.get("uptime_s"), (int, float)) else None,
               env=env, detail=engine_summary(status),
               idle_s=float(idle) if isinstance(idle, (int, float)) and not isinstance(idle, bool) else None)


def agent_log_lines(client: AgentClient, tail: int, follow: bool) -> Iterator[LogLine]:
    """`logs.tail` events as LogLines; closing the iterator cancels a follow."""
    events = client.logs(tail, follow=follow)
    try:
        for kind, data in events:
            if kind == "log":
                yield LogLine(str(data.get("line", "")), ts=str(data.get("ts", "")),
                              source=str(data.get("source", "")))
    finally:
        events.close()
