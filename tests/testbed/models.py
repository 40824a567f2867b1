"""Tiny real llama GGUF models with random weights, written with ggml-org's `gguf` package.

They load in llama-server in well under a second and answer chat completions with real (nonsense)
tokens. Different shapes and seeds give distinct files for swap and context-fit tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.testbed import cache


@dataclass(frozen=True)
class TinyModelSpec:
    name: str
    seed: int
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 4
    n_ff: int = 128
    context_length: int = 4096
    split_parts: int = 1  # >1 writes name-0000k-of-0000N.gguf parts

    @property
    def filename(self) -> str:
        if self.split_parts > 1:
            return f"{self.name}-00001-of-{self.split_parts:05d}.gguf"
        return f"{self.name}.gguf"


TINY_A = TinyModelSpec("tiny-a", seed=1)
TINY_B = TinyModelSpec("tiny-b", seed=2, n_embd=128, n_layer=4, n_ff=256)
TINY_SPLIT = TinyModelSpec("tiny-split", seed=3, split_parts=3)
ALL = (TINY_A, TINY_B, TINY_SPLIT)

MODEL_FORMAT_VERSION = 1  # bump when the writer below changes, to invalidate the cache


def models_dir() -> Path:
    return cache.cache_root() / f"tiny-models-v{MODEL_FORMAT_VERSION}"


def ensure_model(spec: TinyModelSpec, directory: Path | None = None) -> Path:
    """Path of the model's first (or only) file, writing it when missing."""
    directory = directory or models_dir()
    path = directory / spec.filename
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        write_model(spec, directory)
    return path


def write_model(spec: TinyModelSpec, directory: Path) -> None:
    import gguf
    import numpy as np

    vocab = gguf.GGUFReader(str(cache.vocab_gguf()))
    tmp_dir = directory / f".tmp-{spec.name}-{os.getpid()}"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    n_tensors = 3 + 9 * spec.n_layer
    writer = gguf.GGUFWriter(
        str(tmp_dir / f"{spec.name}.gguf"),
        "llama",
        split_max_tensors=-(-n_tensors // spec.split_parts) if spec.split_parts > 1 else 0,
    )
    writer.add_name(spec.name)
    writer.add_context_length(spec.context_length)
    writer.add_embedding_length(spec.n_embd)
    writer.add_block_count(spec.n_layer)
    writer.add_feed_forward_length(spec.n_ff)
    writer.add_head_count(spec.n_head)
    writer.add_head_count_kv(spec.n_head_kv)
    writer.add_rope_dimension_count(spec.n_embd // spec.n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    n_vocab = _copy_tokenizer(vocab, writer)

    rng = np.random.default_rng(spec.seed)
    head_dim = spec.n_embd // spec.n_head
    n_embd_kv = head_dim * spec.n_head_kv

    def weight(*shape: int) -> "np.ndarray":
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    # numpy shapes are ggml's ne reversed: token_embd ne={n_embd, n_vocab} → (n_vocab, n_embd).
    writer.add_tensor("token_embd.weight", weight(n_vocab, spec.n_embd))
    for i in range(spec.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(spec.n_embd, np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(spec.n_embd, spec.n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(n_embd_kv, spec.n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(n_embd_kv, spec.n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(spec.n_embd, spec.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(spec.n_embd, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(spec.n_ff, spec.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(spec.n_ff, spec.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(spec.n_embd, spec.n_ff))
    writer.add_tensor("output_norm.weight", np.ones(spec.n_embd, np.float32))
    writer.add_tensor("output.weight", weight(n_vocab, spec.n_embd))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    # Move into place only when complete, so an interrupted run never leaves a half model.
    for part in sorted(tmp_dir.iterdir()):
        part.rename(directory / part.name)
    tmp_dir.rmdir()


def _copy_tokenizer(vocab, writer) -> int:
    import gguf

    n_vocab = 0
    for name, field in vocab.fields.items():
        if not name.startswith("tokenizer."):
            continue
        value = field.contents()
        main_type = field.types[0]
        if main_type == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, value, main_type, sub_type=field.types[-1])
            if name == "tokenizer.ggml.tokens":
                n_vocab = len(value)
        else:
            writer.add_key_value(name, value, main_type)
    return n_vocab


if __name__ == "__main__":
    for spec in ALL:
        print(ensure_model(spec))
