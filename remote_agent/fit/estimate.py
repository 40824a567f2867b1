"""How many bytes of device memory a model needs at a given context size.

Two estimators answer `bytes_at(ctx)`: `FormulaEstimator` works from the GGUF header alone (the
client's pre-flight, koboldcpp pods) and `FitParamsEstimator` asks llama.cpp's own
`llama-fit-params -fitp on`, which computes the engine's real buffer sizes without allocating them
(the reference wherever the binary exists). Both count what llama.cpp allocates on the device:
weights, KV cache and the compute buffer; what the engine process costs beyond that (a CUDA
context, host-side bookkeeping) is the budget's business (budget.EngineOverhead).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from remote_agent.child_env import without_secrets
from remote_agent.fit.gguf_meta import GGUFHeader

MiB = 1 << 20

# Bytes per element of the KV cache for llama.cpp's --cache-type-k/-v values.
CACHE_TYPE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32,
                    "q4_1": 20 / 32, "q5_0": 22 / 32, "q5_1": 24 / 32, "iq4_nl": 18 / 32}
# Quantized cache types pack 32 values a block, so a head dimension must be a multiple of 32.
_BLOCK_32 = {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl"}

# Architectures whose sliding-window layers follow a fixed pattern when the file has no
# `sliding_window_pattern` key: every n-th layer is a full-attention layer (llama.cpp's
# set_swa_pattern(n)).
_SWA_PATTERN_BY_ARCH = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2, "llama4": 4}


class EstimateError(ValueError):
    """The model or the settings cannot be estimated (the message says why and what to change)."""


@dataclass(frozen=True)
class ModelShape:
    """What the memory estimate needs from a GGUF header."""
    arch: str
    n_layer: int
    n_embd: int
    n_vocab: int
    n_head: tuple[int, ...]      # per layer
    n_head_kv: tuple[int, ...]   # per layer (0 for layers without attention)
    head_dim_k: int
    head_dim_v: int
    n_swa: int                   # sliding-window size, 0 when none
    swa_layers: tuple[bool, ...]
    trained_ctx: int
    weights_bytes: int
    token_embd_bytes: int        # stays in host memory with -ngl 999

    @classmethod
    def from_headers(cls, headers: list[GGUFHeader]) -> "ModelShape":
        """A split model: metadata from part 1, tensors from every part."""
        first = headers[0]
        merged = GGUFHeader(first.version, first.metadata, [t for h in headers for t in h.tensors],
                            first.header_bytes)
        return cls.from_header(merged)

    @classmethod
    def from_header(cls, h: GGUFHeader) -> "ModelShape":
        n_layer = int(h.arch_value("block_count", 0))
        n_embd = int(h.arch_value("embedding_length", 0))
        if n_layer <= 0 or n_embd <= 0:
            raise EstimateError(f"the GGUF header of this {h.architecture} model has no block_count/"
                                "embedding_length; it cannot be estimated (pass an explicit ctx)")
        n_head = _per_layer(h.arch_value("attention.head_count", 0), n_layer)
        n_head_kv = _per_layer(h.arch_value("attention.head_count_kv", None), n_layer, default=n_head)
        first_head = next((n for n in n_head if n), 1)
        head_dim_k = int(h.arch_value("attention.key_length", n_embd // first_head))
        head_dim_v = int(h.arch_value("attention.value_length", n_embd // first_head))
        n_swa = int(h.arch_value("attention.sliding_window", 0) or 0)
        vocab = h.metadata.get("tokenizer.ggml.tokens")
        n_vocab = len(vocab) if vocab is not None else int(h.arch_value("vocab_size", 32000))
        token_embd = sum(t.n_bytes for t in h.tensors if t.name == "token_embd.weight")
        return cls(
            arch=h.architecture, n_layer=n_layer, n_embd=n_embd, n_vocab=n_vocab,
            n_head=n_head, n_head_kv=n_head_kv, head_dim_k=head_dim_k, head_dim_v=head_dim_v,
            n_swa=n_swa, swa_layers=_swa_layers(h, n_layer, n_swa),
            trained_ctx=int(h.arch_value("context_length", 0) or 0),
            weights_bytes=h.tensor_bytes, token_embd_bytes=token_embd)


def _per_layer(value, n_layer: int, default=None) -> tuple[int, ...]:
    if value is None:
        return tuple(default) if default is not None else (0,) * n_layer
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value[:n_layer])
    return (int(value),) * n_layer


def _swa_layers(h: GGUFHeader, n_layer: int, n_swa: int) -> tuple[bool, ...]:
    if n_swa <= 0:
        return (False,) * n_layer
    pattern = h.arch_value("attention.sliding_window_pattern")
    if isinstance(pattern, list):
        return tuple(bool(v) for v in pattern[:n_layer])
    n = int(pattern) if isinstance(pattern, int) else _SWA_PATTERN_BY_ARCH.get(h.architecture, 0)
    if n <= 0:
        return (True,) * n_layer
    return tuple(il % n < n - 1 for il in range(n_layer))


@dataclass(frozen=True)
class RunConfig:
    """The engine settings that change the memory a context costs."""
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    parallel: int = 1
    n_ubatch: int = 512
    n_batch: int = 2048
    flash_attn: bool = True
    token_embd_on_device: bool = False  # True for the CPU stand-in, where everything is "device"
    # Sliding-window layers keep a full-size cache: llama.cpp's --swa-full, and koboldcpp without
    # --useswa (which 1.76 lacks), so the window saves nothing there.
    swa_full: bool = False

    def check(self, shape: ModelShape | None = None) -> None:
        for name, t in (("K", self.cache_type_k), ("V", self.cache_type_v)):
            if t not in CACHE_TYPE_BYTES:
                raise EstimateError(f"unknown {name} cache type {t!r}; use one of "
                                    + ", ".join(sorted(CACHE_TYPE_BYTES)))
        if shape is not None:
            for name, t, dim in (("K", self.cache_type_k, shape.head_dim_k),
                                 ("V", self.cache_type_v, shape.head_dim_v)):
                if t in _BLOCK_32 and dim % 32:
                    raise EstimateError(f"{name} cache type {t} needs a head size divisible by 32; "
                                        f"this model's is {dim}: use f16")
        if self.cache_type_v != "f16" and self.cache_type_v != "f32" and not self.flash_attn:
            raise EstimateError(f"a {self.cache_type_v} V cache needs flash attention; "
                                "turn flash attention on or use an f16 V cache")

    def engine_args(self) -> list[str]:
        """llama.cpp flags that reproduce these settings (for llama-server and llama-fit-params)."""
        return ["-ctk", self.cache_type_k, "-ctv", self.cache_type_v, "-np", str(self.parallel),
                "-ub", str(self.n_ubatch), "-b", str(self.n_batch),
                "-fa", "on" if self.flash_attn else "off", *(["--swa-full"] if self.swa_full else [])]


@dataclass(frozen=True)
class MemoryEstimate:
    ctx: int
    weights: int
    kv: int
    compute: int

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute


def kv_bytes_per_token(shape: ModelShape, cfg: RunConfig) -> float:
    """Bytes per KV cell summed over full-attention layers (sliding-window layers are capped)."""
    return sum(_layer_kv_bytes(shape, cfg, il) for il in range(shape.n_layer) if not shape.swa_layers[il])


def _layer_kv_bytes(shape: ModelShape, cfg: RunConfig, il: int) -> float:
    kv = shape.n_head_kv[il]
    return kv * shape.head_dim_k * CACHE_TYPE_BYTES[cfg.cache_type_k] + \
        kv * shape.head_dim_v * CACHE_TYPE_BYTES[cfg.cache_type_v]


def _pad(n: int, to: int) -> int:
    return -(-n // to) * to


def kv_bytes(shape: ModelShape, cfg: RunConfig, ctx: int) -> int:
    cells = _pad(ctx, 256)
    swa_cells = cells if cfg.swa_full else min(cells, _pad(shape.n_swa * cfg.parallel + cfg.n_ubatch, 256))
    total = 0.0
    for il in range(shape.n_layer):
        total += _layer_kv_bytes(shape, cfg, il) * (swa_cells if shape.swa_layers[il] else cells)
    return int(total)


def compute_bytes(shape: ModelShape, cfg: RunConfig, ctx: int) -> int:
    """The compute buffer: the graph's largest set of live tensors for one ubatch.

    Two phases dominate: the output logits (n_vocab × ubatch, f32) and attention, whose mask is
    ctx × ubatch (f16 with flash attention; without it an f32 mask plus ctx × ubatch × heads f32
    scores).
    The allocator reuses memory between them, so the buffer is about the larger of the two plus
    the per-token activations.
    """
    ub = min(cfg.n_ubatch, _pad(ctx, 256))
    cells = _pad(ctx, 256)
    logits = shape.n_vocab * ub * 4
    n_head = max(shape.n_head) if shape.n_head else 1
    if cfg.flash_attn:
        attention = cells * ub * 2 + n_head * ub * shape.head_dim_v * 4
    else:
        attention = cells * ub * 4 * (1 + n_head)  # f32 mask + f32 scores per head
    activations = 4 * ub * max(shape.n_embd * 4, n_head * shape.head_dim_k * 3)
    return int(max(logits, attention) + activations)


class Estimator(Protocol):
    def bytes_at(self, ctx: int) -> int:
        """Device bytes (weights + KV + compute) the engine allocates at this context."""


@dataclass
class FormulaEstimator:
    shape: ModelShape
    cfg: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        self.cfg.check(self.shape)

    def breakdown(self, ctx: int) -> MemoryEstimate:
        weights = self.shape.weights_bytes
        if not self.cfg.token_embd_on_device:
            weights -= self.shape.token_embd_bytes
        return MemoryEstimate(ctx, weights, kv_bytes(self.shape, self.cfg, ctx),
                              compute_bytes(self.shape, self.cfg, ctx))

    def bytes_at(self, ctx: int) -> int:
        return self.breakdown(ctx).total


class FitParamsError(RuntimeError):
    pass


@dataclass
class FitParamsEstimator:
    """llama.cpp's own figures: `llama-fit-params -m MODEL -c CTX -fitp on` prints, per device,
    `<device> <model MiB> <context MiB> <compute MiB>` without allocating anything.

    A call takes well under a second even for large models (metadata only), and results are
    memoised per ctx; search.largest_fitting_ctx fits a line through two calls and refines it.
    Device lines other than Host win when present (a CUDA build reports the GPU's share there).
    """
    binary: Path
    model: Path
    cfg: RunConfig = field(default_factory=RunConfig)
    timeout: float = 120.0
    calls: int = 0
    _memo: dict[int, MemoryEstimate] = field(default_factory=dict)

    def breakdown(self, ctx: int) -> MemoryEstimate:
        if ctx not in self._memo:
            self._memo[ctx] = self._run(ctx)
        return self._memo[ctx]

    def bytes_at(self, ctx: int) -> int:
        return self.breakdown(ctx).total

    def _run(self, ctx: int) -> MemoryEstimate:
        cmd = [str(self.binary), "-m", str(self.model), "-c", str(ctx), "-fitp", "on", "-ngl", "999",
               *self.cfg.engine_args()]
        self.calls += 1
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  errors="replace", timeout=self.timeout, env=without_secrets())
        except (OSError, subprocess.TimeoutExpired) as e:
            raise FitParamsError(f"llama-fit-params could not run: {e}") from e
        devices = parse_fitp_output(proc.stdout)
        if proc.returncode != 0 or not devices:
            reason = _last_error_line(proc.stderr)
            raise FitParamsError(f"llama-fit-params failed at ctx {ctx}: {reason}")
        gpus = {d: v for d, v in devices.items() if d.lower() != "host"}
        chosen = gpus or devices
        model, context, compute = (sum(v[i] for v in chosen.values()) * MiB for i in range(3))
        return MemoryEstimate(ctx, model, context, compute)


def parse_fitp_output(stdout: str) -> dict[str, tuple[int, int, int]]:
    """`Host 15 32 65` lines → {"Host": (15, 32, 65)} (MiB)."""
    devices = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and all(p.isdigit() for p in parts[1:]):
            devices[parts[0]] = (int(parts[1]), int(parts[2]), int(parts[3]))
    return devices


def _last_error_line(stderr: str) -> str:
    for line in reversed(stderr.splitlines()):
        if " E " in line or "error" in line.lower():
            return line.strip()[-300:]
    return (stderr.strip().splitlines() or ["no output"])[-1][-300:]
