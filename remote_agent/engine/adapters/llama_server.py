"""llama.cpp's llama-server: OpenAI-compatible API, /health, /slots for in-flight requests.

Its API key goes in through LLAMA_API_KEY (llama.cpp's common/arg.cpp: `--api-key` has
`set_env("LLAMA_API_KEY")`), so it is on no command line the agent logs and not in `ps`. With a
key, every endpoint but /health (and the web UI's files) answers 401 without
`Authorization: Bearer KEY` (tools/server/server-http.cpp, `middleware_validate_api_key`).
"""

from __future__ import annotations

import json
from pathlib import Path

from remote_agent.engine.adapters.base import (
    ENGINE_HOST, EngineAdapter, EngineConfig, flag_value, optional_flag)

KEY_ENV = "LLAMA_API_KEY"
ALIAS_FLAGS = ("-a", "--alias")


def model_alias(config: EngineConfig) -> str:
    """The name /v1/models gives the model (without --alias llama-server gives its full path on the
    pod): the MODEL the user gave for a hub reference, the file's name for a path. llama-server
    splits --alias at commas, so there are none."""
    model = config.model
    if model.startswith(("/", "./", "../", "~")) or model.lower().endswith(".gguf"):
        model = Path(model).name
    return model.replace(",", "_") or Path(config.model_path).name


class LlamaServerAdapter(EngineAdapter):
    """llama.cpp's llama-server: ready when /health answers 200 (503 while loading), busy from /slots."""
    name = "llama-server"
    binary = "llama-server"
    health_path = "/health"  # 503 while loading, 200 when ready
    busy_path = "/slots"  # enabled by default; lists is_processing per slot
    ctx_path = "/v1/models"  # data[0].meta.n_ctx: the whole context (--ctx-size), shared by the slots

    key_flags = ("--api-key",)

    def command(self, config: EngineConfig, bin_dir: Path | None, api_key: str | None = None) -> list[str]:
        """Each optional setting as its flag when set, `--alias` (model_alias, unless ARGS names one),
        then ARGS and the fit's flags last. The API key is not among them: it goes in through the
        environment (key_environment)."""
        return [
            self.binary_path(bin_dir), "--model", config.model_path,
            "--host", ENGINE_HOST, "--port", str(config.port),
            *optional_flag("--ctx-size", config.ctx),
            *optional_flag("--n-gpu-layers", config.gpu_layers),
            *optional_flag("--parallel", config.parallel),
            *optional_flag("--batch-size", config.batch_size),
            *optional_flag("--ubatch-size", config.ubatch_size),
            *optional_flag("--n-predict", config.max_tokens),
            *([] if flag_value(config.args, ALIAS_FLAGS) is not None else ["--alias", model_alias(config)]),
            *config.args, *config.fit_args,
        ]

    def served_ctx(self, status: int, body: bytes) -> int | None:
        """`n_ctx` of the first model in /v1/models' `data[].meta` (llama.cpp's llama_n_ctx)."""
        if status != 200:
            return None
        try:
            n_ctx = json.loads(body)["data"][0]["meta"]["n_ctx"]
        except (ValueError, KeyError, IndexError, TypeError):
            return None
        return n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None

    def args_key(self, args) -> tuple[bool, str | None]:
        """`--api-key K[,K2…]` (the first key), or `--api-key-file F` (its first key line, None when
        the agent cannot read it)."""
        value = flag_value(args, self.key_flags)
        if value is not None:
            return True, next((k.strip() for k in value.split(",") if k.strip()), None)
        path = flag_value(args, ("--api-key-file",))
        if path is None:
            return False, None
        try:
            lines = Path(path).read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return True, None
        return True, next((line.strip() for line in lines if line.strip() and not line.startswith("#")), None)

    def key_environment(self, api_key: str | None) -> dict[str, str]:
        """{"LLAMA_API_KEY": api_key}: llama-server reads it as it would --api-key."""
        return {KEY_ENV: api_key} if api_key else {}

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
