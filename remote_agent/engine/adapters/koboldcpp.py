"""koboldcpp, launched with seed 000's flags; health from its KoboldAI API (`/api/v1/model`).

No koboldcpp binary can be installed on the test machine: the tests check this adapter's command
line and run it against a stand-in process that serves the same endpoints.

Its API key is `--password KEY` (koboldcpp reads no variable for it). koboldcpp 1.76 checks it as
`Authorization: Bearer KEY` on its text endpoints (`secure_endpoint`); /api/v1/model and
/api/extra/perf stay open (the model's name reads "koboldcpp/protected-model" without the key),
so health and the busy check work either way. The key is on its command line, so the agent masks
it in every line it logs, and koboldcpp prints its whole argument list at start (`print(args)`),
which the engine's output pump masks too.
"""

from __future__ import annotations

import json
from pathlib import Path

from remote_agent.engine.adapters.base import (
    ENGINE_HOST, GGML_OOM, EngineAdapter, EngineConfig, FailurePatterns, optional_flag)

DEFAULT_GPU_LAYERS = 999  # seed 000: offload everything


class KoboldCppAdapter(EngineAdapter):
    """koboldcpp with seed 000's flags: ready once /api/v1/model names a model, busy from /api/extra/perf."""
    name = "koboldcpp"
    binary = "koboldcpp"
    patterns = FailurePatterns(
        oom=GGML_OOM,
        port_in_use=[r"address already in use", r"Errno 98"],
        bad_model=[r"invalid magic", r"failed to load model", r"error loading model", r"Cannot find model file",
                   r"could not load", r"unknown model", r"gguf_init_from_file"],
    )
    health_path = "/api/v1/model"  # {"result": "koboldcpp/<name>"} once the model is loaded
    busy_path = "/api/extra/perf"  # {"idle": 1|0, "queue": n, ...}

    key_flags = ("--password",)

    def command(self, config: EngineConfig, bin_dir: Path | None, api_key: str | None = None) -> list[str]:
        """Seed 000's flags, each optional setting when set, `--password api_key`, then ARGS and the
        fit's flags last."""
        gpu_layers = DEFAULT_GPU_LAYERS if config.gpu_layers is None else config.gpu_layers
        return [
            self.binary_path(bin_dir), "--model", config.model_path,
            *optional_flag("--contextsize", config.ctx),
            "--host", ENGINE_HOST, "--port", str(config.port),
            "--gpulayers", str(gpu_layers),
            "--usecublas", "mmq", "--flashattention", "--ignoremissing", "--skiplauncher",
            *optional_flag("--blasbatchsize", config.batch_size),
            *optional_flag("--defaultgenamt", config.max_tokens),   # MAX_TOKENS (seed 004)
            *(["--password", api_key] if api_key else []),
            *config.args, *config.fit_args,
        ]

    def is_healthy(self, status: int, body: bytes) -> bool:
        """Ready once /api/v1/model answers 200 with a non-empty "result"."""
        if status != 200:
            return False
        try:
            return bool(json.loads(body).get("result"))
        except (ValueError, AttributeError):
            return False

    def is_busy(self, status: int, body: bytes) -> bool | None:
        """Busy when perf says not idle or requests are queued; None for any other answer."""
        if status != 200:
            return None
        try:
            perf = json.loads(body)
            return not perf.get("idle", 1) or bool(perf.get("queue", 0))
        except (ValueError, AttributeError):
            return None
