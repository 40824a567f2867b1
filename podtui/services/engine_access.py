"""The engine's API key, as the pod's agent tells it: what podtui shows beside a base URL.

The agent runs every engine with an API key unless the pod says `API_KEY=none`
(remote_agent/engine_key.py): without one, any web page open in the user's browser could use a
tunnel's 127.0.0.1:5002 (the engines' CORS allows every origin). The key travels only over the
agent's channel (SSH, or the local pod's socket), only when asked for (`engine.api_key`), never
in `status`. podtui prints it where it prints a base URL, for the user's chat client.
"""

from __future__ import annotations


from podtui.agent.client import AgentClient

KEY_TIMEOUT_S = 10.0


def engine_api_key(client: AgentClient) -> str | None:
    """The API key the pod's engine requires, from an opened AgentClient (its `engine.api_key`).

    Returns None when the engine runs without a key (the pod's API_KEY=none) or when the agent
    is older than engine keys (it answers unknown_method; such an agent starts engines keyless).
    Raises AgentError for any other refusal (or code "timeout"), AgentUnavailable when the
    channel is gone.
    """
    answer = client.call_if_known("engine.api_key", timeout=KEY_TIMEOUT_S)
    key = answer.get("api_key") if isinstance(answer, dict) else None
    return key if isinstance(key, str) and key else None


def key_text(api_key: str | None) -> str:
    """How a key is shown beside a base URL: the key itself, or what its absence means."""
    return api_key or "none (the engine answers anyone who reaches the URL)"
