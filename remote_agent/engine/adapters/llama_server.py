"""llama.cpp's llama-server: OpenAI-compatible API, /health, /slots for in-flight requests."""

from __future__ import annotations

import json
from pathlib import Path

from remote_agent.engine.adapters.base import (
    ENGINE_HOST, GGML_OOM, EngineAdapter, EngineConfig, FailurePatterns, optional_flag)


class LlamaServerAdapter(EngineAdapter):
    """llama.cpp's llama-server: ready when /health answers 200 (503 while loading), busy from /slots."""
    name = "llama-server"
    binary = "llama-server"
    patterns = FailurePatterns(
        oom=GGML_OOM,
        port_in_use=[r"couldn't bind HTTP server socket", r"address already in use"],
        bad_model=[r"invalid magic", r"failed to load model", r"error loading model",
                   r"gguf_init_from_file", r"failed to read", r"tensor .* data is not within the file bounds"],
    )
    health_path = "/health"  # 503 while loading, 200 when ready
    busy_path = "/slots"  # enabled by default; lists is_processing per slot

    def command(self, config: EngineConfig, bin_dir: Path | None) -> list[str]:
        """Each optional setting as its flag when set, then ARGS and the fit's flags last."""
        return [
            self.binary_path(bin_dir), "--model", config.model_path,
            "--host", ENGINE_HOST, "--port", str(config.port),
            *optional_flag("--ctx-size", config.ctx),
            *optional_flag("--n-gpu-layers", config.gpu_layers),
            *optional_flag("--parallel", config.parallel),
            *optional_flag("--batch-size", config.batch_size),
            *optional_flag("--ubatch-size", config.ubatch_size),
            *optional_flag("--n-predict", config.max_tokens),
            *config.args, *config.fit_args,
        ]

    def fit_flags(self, run_config) -> list[str]:
        """`--fit off` and the cache and slot flags of run_config (fit.estimate.RunConfig.engine_args())."""
        # llama-server's own fit (on by default) would shrink the context or move layers to the CPU
        # behind our back; the search needs the whole model on the GPU at exactly the ctx it chose.
        return ["--fit", "off", *run_config.engine_args()]

    def is_busy(self, status: int, body: bytes) -> bool | None:
        """Whether any slot is processing; None when /slots is off (--no-slots) or unreadable."""
        if status != 200:
            return None  # --no-slots, or an older build: cannot tell
        try:
            slots = json.loads(body)
            return any(slot.get("is_processing") for slot in slots)
        except (ValueError, AttributeError, TypeError):
            return None
