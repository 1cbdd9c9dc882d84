"""The `.distill` container taken apart and put together by hand, from its layout.

The layout (models/model_file.py): magic, format version and metadata length (PRELUDE),
the metadata JSON, the weights' length (U64), the safetensors weights, and the SHA-256 of
everything before it. The tests build files here rather than through the module, so they
can make the files it would never write, and a reader is checked against the layout, not
against its own writer.
"""

from __future__ import annotations

import hashlib
import struct

from distill.models.model_file import FORMAT_VERSION, MAGIC

PRELUDE = struct.Struct("<8sIQ")  # magic, format version, metadata length
U64 = struct.Struct("<Q")  # the weights' length; also the safetensors header's length


def split_file(data: bytes) -> tuple[int, bytes, bytes]:
    """(version, metadata bytes, weights blob) of a well-formed file."""
    _, version, meta_len = PRELUDE.unpack_from(data)
    meta = data[PRELUDE.size : PRELUDE.size + meta_len]
    (weights_len,) = U64.unpack_from(data, PRELUDE.size + meta_len)
    start = PRELUDE.size + meta_len + U64.size
    return version, meta, data[start : start + weights_len]


def build_file(meta: bytes, blob: bytes, version: int = FORMAT_VERSION) -> bytes:
    """A file around metadata bytes and a weights blob, with a correct checksum."""
    head = PRELUDE.pack(MAGIC, version, len(meta)) + meta + U64.pack(len(blob))
    return head + blob + hashlib.sha256(head + blob).digest()
