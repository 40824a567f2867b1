"""Read a GGUF file's header (metadata and tensor table) without numpy or the `gguf` package.

The one GGUF reader of the project: the fit estimate, `models.list` (trained context, magic check)
and podtui's pre-flight use it. Stdlib only, because the pre-flight runs on the client: it parses
a byte prefix of a remote file fetched with HTTP range requests, and a truncated prefix says how many bytes it needs
(`HeaderTruncated.need_at_least`) so the caller can grow the range instead of guessing.
Layout (GGUF v2/v3, little endian): b"GGUF", u32 version, u64 tensor count, u64 kv count, the kv
pairs (string key, u32 type, value), then per tensor: name, u32 n_dims, u64 dims, u32 ggml type,
u64 offset.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

GGUF_MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# Numeric arrays up to this length are kept (per-layer head counts, SWA patterns); longer ones
# (token scores, merges) only keep their length, so a 256k vocabulary costs no memory.
_KEEP_ARRAY_MAX = 4096
_MAX_COUNT = 10_000_000
_MAX_STRING = 64 * 1024 * 1024

# ggml type id -> (elements per block, bytes per block), from ggml's type traits.
GGML_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 40), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
    15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18),
    21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4),
    27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66),
    39: (32, 17), 40: (64, 36), 41: (128, 18),
}


class GGUFFormatError(ValueError):
    """Not a GGUF file, or a corrupt header."""


class HeaderTruncated(Exception):
    """The bytes given end inside the header; at least `need_at_least` bytes are needed."""

    def __init__(self, need_at_least: int):
        super().__init__(f"GGUF header continues past the bytes read; need at least {need_at_least}")
        self.need_at_least = need_at_least


@dataclass(frozen=True)
class LongArray:
    """A metadata array too long to keep (e.g. the vocabulary): its element type and length."""
    item_type: int
    length: int

    def __len__(self) -> int:
        return self.length


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int

    @property
    def n_bytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        block, size = GGML_TYPE_SIZES.get(self.ggml_type, (1, 4))
        return -(-n // block) * size


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, object]
    tensors: list[TensorInfo] = field(default_factory=list)
    header_bytes: int = 0  # where the tensor table ends (the data follows after alignment)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "llama"))

    def arch_value(self, key: str, default=None):
        """`<arch>.<key>`, e.g. arch_value("context_length")."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)


class _Cursor:
    def __init__(self, data: bytes | memoryview):
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self.data):
            raise HeaderTruncated(end)
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > _MAX_STRING:
            raise GGUFFormatError(f"implausible string length {n} at byte {self.pos}")
        return bytes(self.take(n)).decode("utf-8", errors="replace")

    def value(self, vtype: int):
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type, n = self.unpack("<I"), self.unpack("<Q")
            if n > _MAX_COUNT:
                raise GGUFFormatError(f"implausible array length {n}")
            if item_type in _SCALARS:
                fmt = _SCALARS[item_type]
                raw = self.take(struct.calcsize(fmt) * n)
                if n > _KEEP_ARRAY_MAX:
                    return LongArray(item_type, n)
                return list(struct.unpack(f"<{n}{fmt[1]}", raw))
            items = [self.value(item_type) for _ in range(n)]
            return LongArray(item_type, n) if n > _KEEP_ARRAY_MAX else items
        raise GGUFFormatError(f"unknown metadata value type {vtype} at byte {self.pos}")


def parse_header(data: bytes | memoryview) -> GGUFHeader:
    """Parse a GGUF header from a prefix of the file; raises HeaderTruncated if it is too short."""
    cur = _Cursor(data)
    if len(cur.data) >= 4 and bytes(cur.data[:4]) != GGUF_MAGIC:
        raise GGUFFormatError("not a GGUF file (the first bytes are not the GGUF magic)")
    cur.take(4)
    version = cur.unpack("<I")
    if version not in (2, 3):
        raise GGUFFormatError(f"unsupported GGUF version {version} (podtui reads versions 2 and 3)")
    n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
    if n_tensors > _MAX_COUNT or n_kv > _MAX_COUNT:
        raise GGUFFormatError(f"implausible counts in the GGUF header ({n_tensors} tensors, {n_kv} keys)")
    metadata: dict[str, object] = {}
    for _ in range(n_kv):
        key = cur.string()
        metadata[key] = cur.value(cur.unpack("<I"))
    tensors = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.unpack("<I")
        if n_dims > 8:
            raise GGUFFormatError(f"tensor {name!r} claims {n_dims} dimensions")
        shape = tuple(cur.unpack("<Q") for _ in range(n_dims))
        tensors.append(TensorInfo(name, shape, cur.unpack("<I"), cur.unpack("<Q")))
    return GGUFHeader(version, metadata, tensors, cur.pos)


def read_header(path: Path, first_read: int = 1 << 20) -> GGUFHeader:
    """The header of a local GGUF file, reading only as far as the header goes."""
    size = first_read
    with open(path, "rb") as f:
        data = f.read(size)
        while True:
            try:
                return parse_header(data)
            except HeaderTruncated as more:
                if len(data) < size:  # end of file reached inside the header
                    raise GGUFFormatError(f"{path} ends inside its GGUF header (truncated download?)") from None
                size = max(more.need_at_least, size * 2)
                data += f.read(size - len(data))


def has_gguf_magic(path: Path) -> bool:
    """Whether the file starts with the GGUF magic (False when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def trained_context(path: Path) -> int | None:
    """`<arch>.context_length` of a local GGUF, or None when absent or the file is unreadable."""
    try:
        value = read_header(path).arch_value("context_length")
    except (OSError, GGUFFormatError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
