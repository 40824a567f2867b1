"""koboldcpp, launched with seed 000's flags; health from its KoboldAI API (`/api/v1/model`).

Its flags changed between releases, so the adapter asks the installed binary what it takes
(koboldcpp_caps.probe: `--help`, once per binary) and passes only those: `--defaultgenamt`
(MAX_TOKENS) only where it exists, and for a context fit `--quantkv` for the cache type and
`--useswa` where the version has it (else the fit estimates the full sliding-window cache). An
explicit ctx outside the version's `--contextsize` range is refused before anything stops. Tested
against a real koboldcpp 1.76 (tests/remote_agent/engine/test_koboldcpp_real.py) and, for the
supervision paths, the stand-in engine.

Its API key is `--password KEY` (koboldcpp reads no variable for it). koboldcpp 1.76 checks it as
`Authorization: Bearer KEY` on its text endpoints (`secure_endpoint`); /api/v1/model and
/api/extra/perf stay open (the model's name reads "koboldcpp/protected-model" without the key),
so health and the busy check work either way. The key is on its command line, so the agent masks
it in every line it logs, and koboldcpp prints its whole argument list at start (`print(args)`),
which the engine's output pump masks too.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from remote_agent.engine.adapters.base import (
    BAD_MODEL, ENGINE_HOST, UNSUPPORTED, EngineAdapter, EngineConfig, EngineFailure, FitLimits, flag_value,
    optional_flag)
from remote_agent.engine.adapters.koboldcpp_caps import QUANTKV_TYPES, KoboldCaps, probe
from remote_agent.fit.gguf_meta import GGUFFormatError, read_header

DEFAULT_GPU_LAYERS = 999  # seed 000: offload everything
LEVEL_OF_TYPE = {t: level for level, t in QUANTKV_TYPES.items()}
log = logging.getLogger("remote_agent.engine")


class KoboldCppAdapter(EngineAdapter):
    """koboldcpp with seed 000's flags: ready once /api/v1/model names a model, busy from /api/extra/perf."""
    name = "koboldcpp"
    binary = "koboldcpp"
    health_path = "/api/v1/model"  # {"result": "koboldcpp/<name>"} once the model is loaded
    busy_path = "/api/extra/perf"  # {"idle": 1|0, "queue": n, ...}
    ctx_path = "/api/extra/true_max_context_length"  # {"value": n}: --contextsize, or its default

    key_flags = ("--password",)

    def caps(self, bin_dir: Path | None) -> KoboldCaps:
        """What the installed koboldcpp accepts (probed once per binary; raises missing_binary)."""
        return probe(self.binary_path(bin_dir))

    def command(self, config: EngineConfig, bin_dir: Path | None, api_key: str | None = None) -> list[str]:
        """Seed 000's flags, each optional setting the installed koboldcpp takes, `--password api_key`,
        then ARGS and the fit's flags last. Raises missing_binary, and bad_model when the model file
        is missing (with seed 000's --ignoremissing, koboldcpp 1.76 would crash on a Python TypeError)."""
        binary = self.binary_path(bin_dir)
        if not Path(config.model_path).is_file():
            raise EngineFailure(BAD_MODEL, f"Cannot find model file: {config.model_path} — start a model that "
                                "models.list shows, or check MODEL / MODEL_DIR")
        caps = probe(binary)
        ctx = caps.largest_ctx_at_most(config.ctx) if config.ctx is not None else None
        max_tokens = config.max_tokens
        if max_tokens is not None and not caps.has("--defaultgenamt"):
            log.warning("MAX_TOKENS=%d is not passed: %s has no --defaultgenamt (a chat completion without "
                        "max_tokens generates up to 400 tokens there)", max_tokens, caps.label)
            max_tokens = None
        gpu_layers = DEFAULT_GPU_LAYERS if config.gpu_layers is None else config.gpu_layers
        return [
            binary, "--model", config.model_path,
            *optional_flag("--contextsize", ctx),
            "--host", ENGINE_HOST, "--port", str(config.port),
            "--gpulayers", str(gpu_layers),
            "--usecublas", "mmq", "--flashattention", "--ignoremissing", "--skiplauncher",
            *optional_flag("--blasbatchsize", config.batch_size),
            *optional_flag("--defaultgenamt", max_tokens),   # MAX_TOKENS (seed 004), where it exists
            # One argument: a generated key may begin with "-", which argparse would take for a flag.
            *([f"--password={api_key}"] if api_key else []),
            *config.args, *config.fit_args,
        ]

    def check(self, config: EngineConfig, bin_dir: Path | None) -> None:
        """Refuse an explicit ctx outside the installed koboldcpp's --contextsize range, and a fit's
        cache type it cannot run (EngineFailure unsupported), before anything is stopped."""
        caps = self.caps(bin_dir)
        if config.ctx is not None and (problem := caps.ctx_problem(config.ctx)):
            raise EngineFailure(UNSUPPORTED, problem)
        if config.fit is not None:
            self.fit_limits(config, bin_dir, config.fit.cache_type)

    def fit_limits(self, config: EngineConfig, bin_dir: Path | None, cache_type: str | None) -> FitLimits:
        """The cache type (the request's, else ARGS' --quantkv level, else f16; one type for K and V,
        as --quantkv sets both), whether the fit must assume a full sliding-window cache (no --useswa
        in this version, or no window in the model), the largest --contextsize, and --useswa when used. Raises EngineFailure unsupported for a cache
        type this koboldcpp has no --quantkv level for."""
        caps = self.caps(bin_dir)
        if cache_type is None:
            level = flag_value(config.args, ("--quantkv",))
            cache_type = QUANTKV_TYPES.get(int(level), "f16") if level and level.isdigit() else "f16"
        try:
            caps.cache_level(cache_type)
        except ValueError as exc:
            raise EngineFailure(UNSUPPORTED, f"{exc}; pass one of those as cache_type") from None
        # --useswa only for a model with a window: elsewhere it saves nothing and disables context shifting.
        use_swa = caps.has("--useswa") and _has_window(config)
        return FitLimits(cache_type=cache_type, swa_full=not use_swa, ctx_max=caps.ctx_max,
                         flags=("--useswa",) if use_swa else ())

    def fit_flags(self, run_config) -> list[str]:
        """`--quantkv N` for a quantized cache (koboldcpp requires flash attention for it, which seed
        000's flags turn on); nothing for f16."""
        level = LEVEL_OF_TYPE.get(run_config.cache_type_k, 0)
        return ["--quantkv", str(level)] if level else []

    def is_healthy(self, status: int, body: bytes) -> bool:
        """Ready once /api/v1/model answers 200 with a non-empty "result"."""
        if status != 200:
            return False
        try:
            return bool(json.loads(body).get("result"))
        except (ValueError, AttributeError):
            return False

    def served_ctx(self, status: int, body: bytes) -> int | None:
        """The "value" of /api/extra/true_max_context_length (4096 for 1.76's default)."""
        if status != 200:
            return None
        try:
            value = json.loads(body).get("value")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, int) and value > 0 else None

    def is_busy(self, status: int, body: bytes) -> bool | None:
        """Busy when perf says not idle or requests are queued; None for any other answer."""
        if status != 200:
            return None
        try:
            perf = json.loads(body)
            return not perf.get("idle", 1) or bool(perf.get("queue", 0))
        except (ValueError, AttributeError):
            return None


def _has_window(config: EngineConfig) -> bool:
    """Whether the model has sliding-window attention layers (its GGUF header says a window size)."""
    try:
        return bool(read_header(Path(config.model_path)).arch_value("attention.sliding_window", 0))
    except (OSError, GGUFFormatError):
        return False
