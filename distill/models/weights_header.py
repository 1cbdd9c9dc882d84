"""The weights' safetensors header, checked before any tensor is built from a model file.

A model file's weights are a safetensors blob (models/model_file.py). Its header says
each tensor's dtype, shape and byte range; a hostile file could make them lie, overlap
or reach past the data, so the header is held here to exactly what our writer produces,
in plain Python: known dtypes, sane shapes whose byte size matches their offsets, and
offsets that tile the data section with no gap or overlap. The strict JSON reading and
the length checks are shared with the container's own checks, and every refusal is one
ModelFileError that says what is wrong.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

MAX_SAFETENSORS_HEADER_BYTES = 16 * 1024 * 1024  # a small model's header is a few KiB
MAX_RANK = 32
MAX_ELEMENTS = 2**48  # cap on the product of a shape's non-zero dims, even for empty tensors

# safetensors dtype name -> bytes per element; anything else is refused.
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}  # fmt: skip

U64 = struct.Struct("<Q")  # every length in a model file, its weights' header length too


class ModelFileError(ValueError):
    """A file that is not a readable .distill model; the message is meant for the user."""


class TensorEntry(NamedTuple):
    """One tensor of a validated weights header; begin and end index the whole blob."""

    dtype: str
    shape: list[int]
    begin: int
    end: int


def check_weights_header(blob: bytes, blob_len: int | None = None) -> dict[str, TensorEntry]:
    """Refuse any safetensors blob whose header is not exactly what our writer produces;
    return its tensors' entries, with byte ranges counted from the start of the blob.

    Mirrors (and tightens) safetensors' own rules: known dtypes, sane shapes whose byte size
    matches their offsets, and offsets that tile the data section with no gap or overlap.
    `blob` may be just a prefix holding the header when `blob_len` gives the full length.
    """
    if blob_len is None:
        blob_len = len(blob)
    need_bytes(U64.size, blob_len, "weights header length")
    (header_len,) = U64.unpack_from(blob)
    if header_len > MAX_SAFETENSORS_HEADER_BYTES:
        raise ModelFileError(
            f"weights header length {header_len} is over the {MAX_SAFETENSORS_HEADER_BYTES} limit"
        )
    need_bytes(header_len, blob_len - U64.size, "weights header")
    header_raw = blob[U64.size : U64.size + header_len]
    header = parse_json(header_raw, "weights header", allow_nan=False, parse_int=_serde_int)
    if not header_raw.startswith(b"{") or not isinstance(header, dict):
        raise ModelFileError("weights header is not a JSON object")
    data_len = blob_len - U64.size - header_len

    data_start = U64.size + header_len
    entries: dict[str, TensorEntry] = {}
    for name, info in header.items():
        if not _is_text(name):
            raise ModelFileError(f"tensor name {name!r} is not valid Unicode")
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(map(_is_text, [*info, *info.values()])):
                raise ModelFileError("weights header __metadata__ must map strings to strings")
        else:
            dtype, shape, begin, end = _validate_tensor_entry(name, info, data_len)
            entries[name] = TensorEntry(dtype, shape, data_start + begin, data_start + end)

    cursor = data_start
    for name, entry in sorted(
        entries.items(), key=lambda item: (item[1].begin, item[1].end, item[0])
    ):
        if entry.begin != cursor:
            problem = (
                "overlaps the previous tensor" if entry.begin < cursor else "leaves a gap before it"
            )
            raise ModelFileError(f"tensor {name!r} {problem} in the data section")
        cursor = entry.end
    if cursor != data_start + data_len:
        unused = data_start + data_len - cursor
        raise ModelFileError(f"{unused} unused bytes at the end of the weights data")
    return entries


def _validate_tensor_entry(
    name: str, info: object, data_len: int
) -> tuple[str, list[int], int, int]:
    """One header entry's dtype, shape and offsets; (dtype, shape, begin, end) in the data."""
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise ModelFileError(f"tensor {name!r} needs exactly dtype, shape and data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise ModelFileError(f"tensor {name!r} has unknown dtype {dtype!r}")
    if not _is_count_list(shape) or len(shape) > MAX_RANK:
        raise ModelFileError(f"tensor {name!r} has an invalid shape {shape!r}")
    nonzero = 1
    for dim in shape:
        nonzero *= dim or 1
        if nonzero > MAX_ELEMENTS:
            raise ModelFileError(f"tensor {name!r} has an absurdly large shape {shape!r}")
    nbytes = (0 if 0 in shape else nonzero) * DTYPE_SIZES[dtype]
    if not _is_count_list(offsets) or len(offsets) != 2:
        raise ModelFileError(f"tensor {name!r} has invalid data offsets {offsets!r}")
    begin, end = offsets
    if not begin <= end <= data_len:
        raise ModelFileError(
            f"tensor {name!r} offsets {offsets} are outside the {data_len}-byte data"
        )
    if nbytes != end - begin:
        raise ModelFileError(
            f"tensor {name!r} ({dtype}, shape {shape}) needs {nbytes} bytes, offsets give {end - begin}"
        )
    return dtype, shape, begin, end


def weights_header_end(prefix: bytes) -> int:
    """How many bytes from the start of the weights the header check needs (capped)."""
    if len(prefix) < U64.size:
        return U64.size
    (header_len,) = U64.unpack_from(prefix)
    return U64.size + min(header_len, MAX_SAFETENSORS_HEADER_BYTES)


def parse_json(
    raw: bytes, what: str, *, allow_nan: bool, parse_int: Callable[[str], Any] = int
) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, NaN only where we write it, bounded nesting."""

    def refuse_constant(token: str) -> Any:
        raise ModelFileError(f"{what} contains {token}, which is not valid here")

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            raise ModelFileError(f"{what} has a duplicate key")
        return result

    try:
        text = raw.decode("utf-8")
        return json.loads(
            text,
            object_pairs_hook=unique_keys,
            parse_int=parse_int,
            parse_constant=None if allow_nan else refuse_constant,  # None: json's default
        )
    except ModelFileError:
        raise
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{what} is not valid JSON: {exc}") from exc


def _serde_int(token: str) -> int | float:
    """A JSON integer as serde_json (safetensors' parser) reads it: `-0` is a float there."""
    return -0.0 if token == "-0" else int(token)


def _is_count_list(value: object) -> bool:
    """A JSON list of non-negative ints; `type is int` because JSON true/false arrive as bool."""
    return isinstance(value, list) and all(type(v) is int and v >= 0 for v in value)


def _is_text(value: object) -> bool:
    """A str that UTF-8 can encode: JSON \\ud800 escapes smuggle in lone surrogates."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def need_bytes(n: int, have: int, what: str) -> None:
    """Compare a length against the bytes actually present before reading or allocating."""
    if n > have:
        raise ModelFileError(f"truncated: expected {n} bytes of {what}, file has {have}")
