"""Engine adapters by name: llama-server and koboldcpp serve a model; ggml-rpc-server (seed 003's
backend role, engine/adapters/rpc_server.py) lends this pod's device to a llama-server elsewhere.
The agent starts ggml-rpc-server only in APP_MODE=backend: it is not an ENGINE a user picks."""

from __future__ import annotations

from remote_agent.engine.adapters.base import EngineAdapter, EngineConfig, EngineFailure
from remote_agent.engine.adapters.koboldcpp import KoboldCppAdapter
from remote_agent.engine.adapters.llama_server import LlamaServerAdapter
from remote_agent.engine.adapters.rpc_server import RpcServerAdapter

# The engines a user picks (ENGINE, engine.start's "engine").
ADAPTERS: dict[str, type[EngineAdapter]] = {
    LlamaServerAdapter.name: LlamaServerAdapter,
    KoboldCppAdapter.name: KoboldCppAdapter,
}
# Every engine the agent may run: those, and the RPC backend's server.
ALL_ADAPTERS: dict[str, type[EngineAdapter]] = {**ADAPTERS, RpcServerAdapter.name: RpcServerAdapter}

__all__ = ["ADAPTERS", "ALL_ADAPTERS", "EngineAdapter", "EngineConfig", "EngineFailure", "adapter_for"]


def adapter_for(name: str) -> EngineAdapter:
    """A fresh adapter for engine name ("llama-server", "koboldcpp", "ggml-rpc-server"); ValueError
    names the known ones."""
    try:
        return ALL_ADAPTERS[name]()
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; use one of: {', '.join(ADAPTERS)}") from None
