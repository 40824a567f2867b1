"""A small stdlib reader of the GGUF header: magic check and a few key/value metadata entries.

`models.list` needs the trained context of every file in MODEL_DIR; the `gguf` package would read
(and memory-map) the whole tensor table, so this reads only the header up to the keys it needs.
Layout (GGUF v2/v3, little endian): magic b"GGUF", u32 version, u64 tensor count, u64 kv count,
then kv pairs: string key (u64 length + bytes), u32 value type, value.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Iterator

GGUF_MAGIC = b"GGUF"

# value type -> struct format of a scalar
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# Headers of real models hold vocabularies of a few hundred thousand strings; anything beyond this
# is a corrupt or hostile file, not a model.
_MAX_KV = 100_000
_MAX_STRING = 64 * 1024 * 1024


class GGUFFormatError(ValueError):
    pass


def has_gguf_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def iter_metadata(path: Path) -> Iterator[tuple[str, object]]:
    """(key, value) pairs of the header in file order; arrays are skipped and yield None."""
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise GGUFFormatError(f"{path} is not a GGUF file (no GGUF magic)")
        (version,) = _read(f, "<I")
        # v1 used 32-bit counts; nobody publishes v1 any more but it costs one line
        _, n_kv = _read(f, "<II") if version == 1 else _read(f, "<QQ")
        if n_kv > _MAX_KV:
            raise GGUFFormatError(f"{path}: implausible metadata count {n_kv}")
        for _ in range(n_kv):
            key = _read_string(f)
            (vtype,) = _read(f, "<I")
            if vtype == _ARRAY:
                _skip_array(f)
                yield key, None
            else:
                yield key, _read_value(f, vtype)


def trained_context(path: Path) -> int | None:
    """`<arch>.context_length` from the header, or None when absent or unreadable.
    Stops reading as soon as it has it (it comes before the big tokenizer arrays in practice)."""
    arch = None
    contexts: dict[str, object] = {}
    try:
        for key, value in iter_metadata(path):
            if key == "general.architecture":
                arch = value
            elif key.endswith(".context_length"):
                contexts[key] = value
            if arch and f"{arch}.context_length" in contexts:
                break
    except (OSError, GGUFFormatError, struct.error):
        return None
    value = contexts.get(f"{arch}.context_length") if arch else None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _read(f: BinaryIO, fmt: str) -> tuple:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise GGUFFormatError("truncated GGUF header")
    return struct.unpack(fmt, data)


def _read_string(f: BinaryIO) -> str:
    (length,) = _read(f, "<Q")
    if length > _MAX_STRING:
        raise GGUFFormatError("implausible string length")
    data = f.read(length)
    if len(data) != length:
        raise GGUFFormatError("truncated GGUF header")
    return data.decode("utf-8", errors="replace")


def _read_value(f: BinaryIO, vtype: int):
    if vtype == _STRING:
        return _read_string(f)
    fmt = _SCALARS.get(vtype)
    if fmt is None:
        raise GGUFFormatError(f"unknown GGUF value type {vtype}")
    return _read(f, fmt)[0]


def _skip_array(f: BinaryIO) -> None:
    (etype,) = _read(f, "<I")
    (count,) = _read(f, "<Q")
    if etype == _STRING:
        for _ in range(count):
            (length,) = _read(f, "<Q")
            f.seek(length, 1)
    elif etype in _SCALARS:
        f.seek(struct.calcsize(_SCALARS[etype]) * count, 1)
    elif etype == _ARRAY:
        for _ in range(count):
            _skip_array(f)
    else:
        raise GGUFFormatError(f"unknown GGUF array type {etype}")
