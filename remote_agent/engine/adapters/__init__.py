"""Engine adapters by name. An `rpc-server` adapter (seed 003: ggml-rpc-server as a backend for a
llama-server elsewhere) slots in here as engine/adapters/rpc_server.py; it is not built yet."""

from __future__ import annotations

from remote_agent.engine.adapters.base import EngineAdapter, EngineConfig, EngineFailure
from remote_agent.engine.adapters.koboldcpp import KoboldCppAdapter
from remote_agent.engine.adapters.llama_server import LlamaServerAdapter

ADAPTERS: dict[str, type[EngineAdapter]] = {
    LlamaServerAdapter.name: LlamaServerAdapter,
    KoboldCppAdapter.name: KoboldCppAdapter,
}

__all__ = ["ADAPTERS", "EngineAdapter", "EngineConfig", "EngineFailure", "adapter_for"]


def adapter_for(name: str) -> EngineAdapter:
    """A fresh adapter for engine name ("llama-server", "koboldcpp"); ValueError names the known ones."""
    try:
        return ADAPTERS[name]()
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; use one of: {', '.join(ADAPTERS)}") from None
