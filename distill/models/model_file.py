"""The `.distill` model file: one self-describing file per trained model.

Layout (all integers little-endian; total size is exactly 60 + M + W bytes):

    offset   size  field
    0        8     MAGIC b"DISTILL\\x00"
    8        4     format version, u32 (FORMAT_VERSION)
    12       8     metadata length M, u64 (at most MAX_METADATA_BYTES)
    20       M     metadata: one JSON object, UTF-8 (config, dataset fingerprint, health, curves)
    20+M     8     weights length W, u64
    28+M     W     weights: a safetensors blob
    28+M+W   32    SHA-256 of every byte before it

Files are recognised by MAGIC and version, never by extension, so a renamed or foreign file
gets a clear refusal instead of a confusing crash. Nothing on the load path unpickles: model
files get shared, and a pickle would run whatever code its author chose. Every length is
checked against the bytes actually present before anything is read or allocated, the
checksum is verified before any JSON is parsed, and the safetensors header is validated
(models/weights_header.py) and the tensors built here from its checked byte ranges (the
safetensors library only writes, nothing of it runs on a file being read), so every
malformed file ends in one ModelFileError that says what is wrong. Files are written
atomically (distill/files.py): a reader sees the old file or the new one.

Metadata goes through Python's json module: tuples come back as lists, non-str keys as strs,
and NaN/Infinity (a diverged loss curve) are kept rather than refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from distill.files import atomic_file
from distill.models.weights_header import (
    DTYPE_SIZES,
    U64,
    ModelFileError,
    TensorEntry,
    check_weights_header,
    need_bytes,
    parse_json,
    weights_header_end,
)
from distill.paths import MODEL_FILE_EXTENSION

if TYPE_CHECKING:  # torch loads only to save or load weights: listing models stays fast
    import torch

MAGIC = b"DISTILL\x00"
# 2: the model may carry a decoder stage (config.decoder_stage_channels, vqvae.stage.*);
# a version 1 file has none and still loads, playing through Griffin-Lim.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
FILE_EXTENSION = MODEL_FILE_EXTENSION

MAX_METADATA_BYTES = 16 * 1024 * 1024
MAX_MODEL_FILE_BYTES = 512 * 1024**2  # the largest file the library imports (CLI and server)
_TORCH_DTYPES = {  # str(tensor.dtype) -> safetensors dtype name
    "torch.float64": "F64", "torch.float32": "F32", "torch.float16": "F16",
    "torch.bfloat16": "BF16", "torch.int64": "I64", "torch.int32": "I32", "torch.int16": "I16",
    "torch.int8": "I8", "torch.uint8": "U8", "torch.bool": "BOOL",
}  # fmt: skip

_TORCH_DTYPE_OF = {
    name: torch_name.removeprefix("torch.") for torch_name, name in _TORCH_DTYPES.items()
}


class ModelFileHeader(NamedTuple):
    """A model file read through without its weights: what `copy_model_file` and
    `read_tensor` need to use the file's weights without holding them."""

    metadata: dict
    tensors: dict[str, TensorEntry]
    weights_start: int  # offset of the weights blob in the file
    checksum: bytes  # the file's SHA-256, which the streamed read verified


_PRELUDE = struct.Struct("<8sIQ")  # magic, version, metadata length
_CHECKSUM_BYTES = 32
_CHUNK = 1024 * 1024


def save_model_file(path: Path | str, tensors: dict[str, torch.Tensor], metadata: dict) -> Path:
    """Write atomically: readers see the old file or the new one, never half of either.

    Everything that can fail on bad input (serialising metadata and weights) happens before
    the disk is touched. Tensors are copied to fresh contiguous CPU storage, because
    safetensors refuses tensors that share storage (tied weights).
    """
    path = Path(path)
    meta_raw = _metadata_bytes(metadata)
    import safetensors.torch
    import torch

    cpu: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise TypeError(f"tensors must map str names to torch.Tensor, got {name!r}")
        if str(tensor.dtype) not in _TORCH_DTYPES:
            raise TypeError(
                f"tensor {name!r} has dtype {tensor.dtype}, which .distill files do not store"
            )
        cpu[name] = tensor.detach().to("cpu").clone(memory_format=torch.contiguous_format)
    blob = safetensors.torch.save(cpu)
    check_weights_header(blob)  # never write a file this module would refuse to read

    with atomic_file(path) as out:
        for part in _container_parts(meta_raw, blob):
            out.write(part)
    return path


def _metadata_bytes(metadata: dict) -> bytes:
    """The metadata as the file stores it; refused (TypeError, ValueError) before any write."""
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    try:
        meta_raw = json.dumps(metadata).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata is not JSON-serialisable: {exc}") from exc
    if len(meta_raw) > MAX_METADATA_BYTES:
        raise ValueError(
            f"metadata is {len(meta_raw)} bytes as JSON; the limit is {MAX_METADATA_BYTES}"
        )
    return meta_raw


def read_model_metadata(path: Path | str) -> dict:
    """The model card, for listing and inspecting models without building any tensors.

    The whole file is still checksummed (streamed in chunks) and the weights header validated,
    so a card is never shown for a file that would then fail to load.
    """
    with open_model_file(path) as (f, size):
        return read_model_header(f, size).metadata


def read_model_header(f: BinaryIO, size: int) -> ModelFileHeader:
    """Check a whole model file streamed in chunks, from an open file of `size` bytes:
    checksum, metadata and weights header; the weights themselves are not kept."""
    container = _read_container(f, size, keep_weights=False)
    assert container.entries is not None
    return ModelFileHeader(
        container.metadata, container.entries, container.weights_start, container.checksum
    )


def tensor_dtype(tensor: torch.Tensor) -> str:
    """The safetensors name of a tensor's dtype ("F32"), as the weights header says it."""
    return _TORCH_DTYPES[str(tensor.dtype)]


def read_tensor_chunks(f: BinaryIO, header: ModelFileHeader, name: str) -> Iterator[torch.Tensor]:
    """One tensor of a file `read_model_header` checked, flat, in chunks of about a MiB:
    a pass over its values that never holds it whole."""
    entry = header.tensors[name]
    step = _CHUNK - _CHUNK % DTYPE_SIZES[entry.dtype]
    for start in range(entry.begin, entry.end, step):
        f.seek(header.weights_start + start)
        data = _read_exact(f, min(step, entry.end - start), "weights")
        count = len(data) // DTYPE_SIZES[entry.dtype]
        yield _tensor(data, TensorEntry(entry.dtype, [count], 0, len(data)))


def copy_model_file(f: BinaryIO, header: ModelFileHeader, metadata: dict, path: Path) -> Path:
    """Write `path` atomically: `metadata` and the weights of open file `f`, copied in
    chunks. The copied bytes are hashed again, so a file that changed since
    `read_model_header` checked it is refused rather than copied."""
    meta_raw = _metadata_bytes(metadata)
    f.seek(0)
    weights_len_at = header.weights_start - U64.size
    source = hashlib.sha256(_read_exact(f, weights_len_at, "header"))
    weights_len_raw = _read_exact(f, U64.size, "weights length")
    source.update(weights_len_raw)
    (weights_len,) = U64.unpack(weights_len_raw)
    head = _PRELUDE.pack(MAGIC, FORMAT_VERSION, len(meta_raw)) + meta_raw + weights_len_raw
    written = hashlib.sha256(head)

    def chunks() -> Iterator[bytes]:
        yield head
        for start in range(0, weights_len, _CHUNK):
            chunk = _read_exact(f, min(_CHUNK, weights_len - start), "weights")
            source.update(chunk)
            written.update(chunk)
            yield chunk
        if not hmac.compare_digest(source.digest(), header.checksum):
            raise ModelFileError("the file changed while it was being read")
        yield written.digest()

    with atomic_file(path) as out:  # not `f`: chunks() reads the source through it
        for chunk in chunks():
            out.write(chunk)
    return path


def load_model_file(path: Path | str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) from a fully validated file."""
    with open_model_file(path) as (f, size):
        return _load_stream(f, size)


def is_model_file(path: Path | str) -> bool:
    """A cheap magic-byte sniff for listing a folder; says nothing about integrity."""
    try:
        with _open_for_reading(path) as f:
            return stat.S_ISREG(os.fstat(f.fileno()).st_mode) and f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _open_for_reading(path: Path | str) -> BinaryIO:
    """open(path, "rb") that cannot block: a FIFO would hang a plain open() before the
    regular-file check could refuse it. O_NONBLOCK changes nothing for regular files."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        return os.fdopen(fd, "rb")  # raises IsADirectoryError for a folder
    except BaseException:
        os.close(fd)
        raise


def _load_bytes(data: bytes) -> tuple[dict, dict[str, torch.Tensor]]:
    """load_model_file on an in-memory file; lets the fuzz tests skip the disk."""
    return _load_stream(io.BytesIO(data), len(data))


def _load_stream(f: BinaryIO, size: int) -> tuple[dict, dict[str, torch.Tensor]]:
    container = _read_container(f, size, keep_weights=True)
    blob = container.blob
    assert blob is not None
    entries = check_weights_header(blob)
    return container.metadata, {
        name: _tensor(blob[entry.begin : entry.end], entry) for name, entry in entries.items()
    }


def _tensor(data: bytes, entry: TensorEntry) -> torch.Tensor:
    """A tensor straight from a validated header entry's bytes: no loader of any kind runs
    on the file, only copies of bytes whose dtype, shape and extent were checked.
    safetensors data is little-endian, as every machine torch runs on here is."""
    import torch

    torch_dtype = getattr(torch, _TORCH_DTYPE_OF[entry.dtype])
    raw = bytearray(data)  # its own aligned, writable buffer
    flat = torch.frombuffer(raw, dtype=torch_dtype) if raw else torch.empty(0, dtype=torch_dtype)
    return flat.reshape(entry.shape)


@contextlib.contextmanager
def open_model_file(path: Path | str) -> Iterator[tuple[BinaryIO, int]]:
    """Open a model for reading: (file, size); every refusal inside names the file."""
    path = Path(path)
    try:
        f = _open_for_reading(path)  # closed by the with below
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ModelFileError(f"no such model file: {path}") from exc
    except IsADirectoryError as exc:
        raise ModelFileError(f"{path} is a folder, not a model file") from exc
    with f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ModelFileError(f"{path} is not a regular file")
        try:
            yield f, info.st_size
        except ModelFileError as exc:
            raise ModelFileError(f"{path}: {exc}") from exc


class _Container(NamedTuple):
    metadata: dict
    blob: bytes | None  # the weights, when kept
    entries: dict[str, TensorEntry] | None  # the weights header, when they were streamed
    weights_start: int
    checksum: bytes


def _read_container(f: BinaryIO, size: int, *, keep_weights: bool) -> _Container:
    """Check magic, version, lengths and checksum; return the metadata and the weights
    blob, or (streamed, not kept) the weights header's entries."""
    if size == 0:
        raise ModelFileError("empty file: not a distill model file")
    head = f.read(_PRELUDE.size)
    if head[: len(MAGIC)] != MAGIC:
        if len(head) < len(MAGIC) and MAGIC.startswith(head):
            raise ModelFileError(f"truncated: file has only {len(head)} bytes")
        raise ModelFileError("not a distill model file (bad magic bytes)")
    need_bytes(_PRELUDE.size, len(head), "header")
    _, version, meta_len = _PRELUDE.unpack(head)
    if version not in READABLE_VERSIONS:
        raise ModelFileError(
            f"unsupported format version {version} (this distill reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    if meta_len > MAX_METADATA_BYTES:
        raise ModelFileError(f"metadata length {meta_len} is over the {MAX_METADATA_BYTES} limit")
    remaining = size - _PRELUDE.size
    need_bytes(meta_len, remaining, "metadata")
    meta_raw = _read_exact(f, meta_len, "metadata")
    remaining -= meta_len
    need_bytes(U64.size, remaining, "weights length")
    weights_len_raw = _read_exact(f, U64.size, "weights length")
    (weights_len,) = U64.unpack(weights_len_raw)
    remaining -= U64.size
    need_bytes(weights_len + _CHECKSUM_BYTES, remaining, "weights and checksum")
    if weights_len + _CHECKSUM_BYTES < remaining:
        extra = remaining - weights_len - _CHECKSUM_BYTES
        raise ModelFileError(f"trailing bytes after checksum ({extra} bytes)")

    digest = hashlib.sha256(head + meta_raw + weights_len_raw)
    blob = _read_exact(f, weights_len, "weights") if keep_weights else None
    prefix = b""  # the start of the weights, kept while streaming until it holds their header
    if blob is not None:
        digest.update(blob)
    else:
        for start in range(0, weights_len, _CHUNK):
            chunk = _read_exact(f, min(_CHUNK, weights_len - start), "weights")
            digest.update(chunk)
            if len(prefix) < weights_header_end(prefix):
                prefix += chunk
    checksum = _read_exact(f, _CHECKSUM_BYTES, "checksum")
    if not hmac.compare_digest(digest.digest(), checksum):
        raise ModelFileError("checksum mismatch: the file is corrupted")

    metadata = parse_json(meta_raw, "metadata", allow_nan=True)
    if not isinstance(metadata, dict):
        raise ModelFileError(f"metadata is a JSON {type(metadata).__name__}, not an object")
    # streamed: refuse exactly what load_model_file would refuse
    entries = None if blob is not None else check_weights_header(prefix, weights_len)
    weights_start = _PRELUDE.size + meta_len + U64.size
    return _Container(metadata, blob, entries, weights_start, checksum)


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    """Read n bytes that the length checks promised are there; the file may shrink meanwhile."""
    data = f.read(n)
    if len(data) != n:
        raise ModelFileError(f"truncated: expected {n} bytes of {what}, file has {len(data)}")
    return data


def _container_parts(
    meta_raw: bytes, blob: bytes, version: int = FORMAT_VERSION
) -> tuple[bytes, bytes, bytes]:
    """(head, weights, checksum): the file is their concatenation, kept apart to spare a copy."""
    head = _PRELUDE.pack(MAGIC, version, len(meta_raw)) + meta_raw + U64.pack(len(blob))
    digest = hashlib.sha256(head)
    digest.update(blob)
    return head, blob, digest.digest()
