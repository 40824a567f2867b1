"""Jupyter on a pod (issue 20), as the pod's agent tells it: the state and the token behind a tunnel.

`remote-agent boot` runs Jupyter on the pod's 127.0.0.1 only, when the pod sets JUPYTER=1 or
JUPYTER_PASSWORD (remote_agent/jupyter.py); Runpod's proxied `startJupyter` port is never used. The
token travels only over the agent's channel on the verified SSH connection, when asked for
(`jupyter.token`), never in `status`.
"""

from __future__ import annotations

from dataclasses import dataclass


from podtui.agent.client import AgentClient

DEFAULT_PORT = 8888  # Jupyter's port on the pod's loopback unless JUPYTER_PORT moves it
TOKEN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class JupyterInfo:
    """state: "starting" | "running" | "restarting" | "paused" | "stopped"; port: Jupyter's TCP port on the
    pod's 127.0.0.1; token: what Jupyter requires (None when unknown); last_error: a sentence or None."""
    state: str
    port: int
    token: str | None
    last_error: str | None = None

    def url(self, base: str) -> str:
        """The URL to open: base (e.g. "http://127.0.0.1:8888", the local end of the forward) with /lab
        and the token as Jupyter takes it in a query."""
        return f"{base}/lab" + (f"?token={self.token}" if self.token else "")


def jupyter_info(client: AgentClient) -> JupyterInfo | None:
    """Jupyter's state and token from an opened AgentClient (its `jupyter.token`), or None when the pod
    runs no Jupyter (not asked for, or an agent older than issue 20: unknown_method).
    Raises AgentError for any other refusal, AgentUnavailable when the channel is gone."""
    answer = client.call_if_known("jupyter.token", timeout=TOKEN_TIMEOUT_S)
    state = answer.get("state") if isinstance(answer, dict) else None
    if not isinstance(state, dict):
        return None
    token = answer.get("token")
    port = state.get("port")
    return JupyterInfo(state=str(state.get("state") or "unknown"),
                       port=port if isinstance(port, int) else DEFAULT_PORT,
                       token=token if isinstance(token, str) and token else None,
                       last_error=state.get("last_error") if isinstance(state.get("last_error"), str) else None)


LOCAL_PORTS = range(DEFAULT_PORT, DEFAULT_PORT + 10)  # where the TUI forwards Jupyter from on this machine


def free_local_port(ports: range = LOCAL_PORTS) -> int | None:
    """The first port of ports nothing on this machine's 127.0.0.1 listens on, or None."""
    import socket
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return None

