"""Seeded fuzzing of the `.distill` reader: every malformed file must end in ModelFileError.

Thousands of mutants of one small valid file: truncations, bit flips, byte edits, bad length
fields, and mutants whose checksum is recomputed so that they reach the metadata and
safetensors validation. Each mutant is written to disk and read with both load_model_file and
read_model_metadata; the two must agree (no card for a file that would not load), and only a
mutant equivalent to the original may load.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from container import PRELUDE, U64, build_file, split_file

from distill.models import model_file as mf
from distill.models.model_file import (
    FORMAT_VERSION,
    MAGIC,
    ModelFileError,
    is_model_file,
    load_model_file,
    read_model_metadata,
    save_model_file,
)
from distill.models.weights_header import MAX_SAFETENSORS_HEADER_BYTES

SEED = 0xD15711
CHUNKS = (1, 5, 64, 1 << 20)  # read_model_metadata's streaming chunk, varied per mutant

# A mutant: (description, file bytes, expectation). The expectation is "same" (must load and
# equal the original), "refuse" (must raise ModelFileError), "bytes" (same iff the bytes are
# identical to the original, else refuse) or "data" (loads; only tensor values differ).
Mutant = tuple[str, bytes, str, tuple[str, ...]]


# --- building and taking apart files -------------------------------------------------------


def split_blob(blob: bytes) -> tuple[dict[str, Any], bytes]:
    (header_len,) = U64.unpack_from(blob)
    return json.loads(blob[8 : 8 + header_len]), blob[8 + header_len :]


def make_blob(
    header: Any, data: bytes, *, raw: bytes | None = None, length: int | None = None
) -> bytes:
    header_raw = json.dumps(header).encode() if raw is None else raw
    return U64.pack(len(header_raw) if length is None else length) + header_raw + data


def raw_bytes(t: torch.Tensor) -> bytes:
    return bytes(t.contiguous().reshape(-1).view(torch.uint8).tolist())


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> tuple[bytes, dict, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(SEED)
    tensors = {
        "enc.weight": torch.randn(2, 3, generator=gen),
        "enc.steps": torch.arange(4, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "scale": torch.tensor(0.5, dtype=torch.float16),
        "empty": torch.zeros(0, 2),
        "codes": torch.randn(2, generator=gen).to(torch.bfloat16),
    }
    metadata = {"type": "distill-model", "config": {"hidden": 4}, "curve": [1.0, 0.5]}
    path = save_model_file(tmp_path_factory.mktemp("fuzz") / "base.distill", tensors, metadata)
    return path.read_bytes(), metadata, tensors


# --- mutant generators ---------------------------------------------------------------------


def truncations(rng: random.Random, good: bytes, n: int) -> Iterator[Mutant]:
    for _ in range(n):
        cut = rng.randrange(len(good))
        yield f"truncated to {cut} bytes", good[:cut], "refuse", ("truncated", "empty file")


def bit_flips(rng: random.Random, good: bytes, n: int) -> Iterator[Mutant]:
    for _ in range(n):
        data = bytearray(good)
        flips = [(rng.randrange(len(data)), rng.randrange(8)) for _ in range(rng.randint(1, 4))]
        for index, bit in flips:
            data[index] ^= 1 << bit
        yield f"bit flips (byte, bit) {flips}", bytes(data), "bytes", ()


def byte_edits(rng: random.Random, good: bytes, n: int) -> Iterator[Mutant]:
    for _ in range(n):
        data = bytearray(good)
        at = rng.randrange(len(data))
        op = rng.choice(["overwrite", "insert", "delete", "duplicate"])
        size = rng.randint(1, 16)
        if op == "overwrite":
            data[at : at + size] = rng.randbytes(len(data[at : at + size]))
        elif op == "insert":
            data[at:at] = rng.randbytes(size)
        elif op == "delete":
            del data[at : at + size]
        else:
            data[at:at] = data[at : at + size]
        yield f"{op} {size} bytes at {at}", bytes(data), "bytes", ()


def length_fields(rng: random.Random, good: bytes, n: int) -> Iterator[Mutant]:
    """Length fields rewritten without fixing the checksum: refused before it is checked."""
    _, meta, blob = split_file(good)
    rest = good[PRELUDE.size :]
    head = good[: PRELUDE.size + len(meta)]
    tail = good[len(head) + U64.size :]
    limit = mf.MAX_METADATA_BYTES
    for i in range(n):
        kind = i % 5
        if kind == 0:
            value = rng.choice([limit + 1, 2**63, 2**64 - 1, rng.randrange(limit + 1, 2**64)])
            data = PRELUDE.pack(MAGIC, FORMAT_VERSION, value) + rest
            yield f"huge metadata length {value}", data, "refuse", ("over the",)
        elif kind == 1:
            value = rng.randrange(len(rest) - 7, limit + 1)
            data = PRELUDE.pack(MAGIC, FORMAT_VERSION, value) + rest
            yield f"metadata length {value} past the end", data, "refuse", ("truncated",)
        elif kind == 2:
            value = rng.choice([2**64 - 1, 2**63, rng.randrange(len(blob) + 1, 2**64)])
            yield (
                f"huge weights length {value}",
                head + U64.pack(value) + tail,
                "refuse",
                ("truncated",),
            )
        elif kind == 3:
            value = rng.randrange(len(blob))
            yield (
                f"short weights length {value}",
                head + U64.pack(value) + tail,
                "refuse",
                ("trailing bytes",),
            )
        else:
            value = rng.randrange(len(rest))
            if value != len(meta):
                data = PRELUDE.pack(MAGIC, FORMAT_VERSION, value) + rest
                yield f"wrong metadata length {value}", data, "refuse", ()


def bad_metadata(rng: random.Random, good: bytes, n: int) -> Iterator[Mutant]:
    """Checksum recomputed: the metadata JSON itself is wrong."""
    _, meta, blob = split_file(good)
    not_objects = [b"[]", b"[1, 2]", b'"card"', b"3", b"-1.5", b"null", b"true", b"NaN",
                   b'[{"type": "distill-model"}]', b' "x" ']  # fmt: skip
    for i in range(n):
        kind = i % 6
        if kind == 0:
            value = rng.choice(not_objects)
            yield f"metadata {value!r}", build_file(value, blob), "refuse", ("not an object",)
        elif kind == 1:
            cut = rng.randrange(1, len(meta))
            yield (
                f"metadata cut at {cut}",
                build_file(meta[:cut], blob),
                "refuse",
                ("not valid JSON",),
            )
        elif kind == 2:
            at = rng.randrange(len(meta) + 1)
            bad = meta[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])
            yield (
                "metadata with invalid UTF-8",
                build_file(bad + meta[at:], blob),
                "refuse",
                ("not valid JSON",),
            )
        elif kind == 3:
            key = rng.choice(["type", "config", "x"])
            dup = f'{{"{key}": 1, "b": 2, "{key}": 3}}'.encode()
            yield (
                f"metadata duplicate key {key}",
                build_file(dup, blob),
                "refuse",
                ("duplicate key",),
            )
        elif kind == 4:
            depth = rng.randint(2_000, 60_000)
            deep = rng.choice([b"[" * depth, b'{"a": ' * depth + b"1" + b"}" * depth])
            yield (
                f"metadata nested {depth} deep",
                build_file(deep, blob),
                "refuse",
                ("not valid JSON",),
            )
        else:
            junk = rng.choice([b"", b" ", b"{", b"}", b"{}{}", b'{"a": 1} x', b"\x00{}"])
            yield f"metadata {junk!r}", build_file(junk, blob), "refuse", ("not valid JSON",)


def header_mutants(rng: random.Random, good: bytes, n: int) -> Iterator[Mutant]:
    """Checksum recomputed: the safetensors header inside the weights is malformed."""
    _, meta, blob = split_file(good)
    header, data = split_blob(blob)
    names = [k for k in header if k != "__metadata__"]
    sized = [k for k in names if header[k]["data_offsets"][1] > header[k]["data_offsets"][0]]
    data_len = len(data)

    def edit(fn: Callable[[dict], object]) -> bytes:
        h = json.loads(json.dumps(header))
        fn(h)
        return make_blob(h, data)

    makers: list[Callable[[], tuple[str, bytes, tuple[str, ...]]]] = []

    def maker(fn):
        makers.append(fn)
        return fn

    @maker
    def overlap():
        name = rng.choice(sized)
        begin, end = header[name]["data_offsets"]
        shift = rng.randint(1, end - begin + 8)

        def fn(h):
            h[name]["data_offsets"] = [begin - shift, end - shift]

        return f"{name} shifted back {shift}", edit(fn), ("overlaps", "invalid data offsets")

    @maker
    def same_offsets():
        a, b = rng.sample(sized, 2)

        def fn(h):
            h[b]["data_offsets"] = h[a]["data_offsets"]
            h[b]["shape"], h[b]["dtype"] = h[a]["shape"], h[a]["dtype"]

        return f"{b} on top of {a}", edit(fn), ("overlaps", "gap")

    @maker
    def out_of_range():
        name = rng.choice(names)
        begin, end = header[name]["data_offsets"]
        over = data_len + rng.choice([1, 8, data_len, 2**32, 2**63, 2**64, 2**80])
        swap = rng.random() < 0.3

        def fn(h):
            h[name]["data_offsets"] = [end + 1, begin] if swap else [begin + over, end + over]

        return f"{name} offsets past the data (swap={swap})", edit(fn), ("outside",)

    @maker
    def overflowing_shape():
        name = rng.choice(names)
        shape = rng.choice([[2**32, 2**32], [2**63, 2**63], [2**64], [2**31] * 4, [2**62, 4],
                            [2**70], [0, 2**64], [3, 2**62, 0, 2**40], [2**16] * 4])  # fmt: skip

        def fn(h):
            h[name]["shape"] = shape

        return f"{name} shape {shape}", edit(fn), ("absurdly large",)

    @maker
    def wrong_size_shape():
        name = rng.choice(sized)
        shape = rng.choice([[7], [2, 2, 2], [1, 1, 5], [1000], [0]])

        def fn(h):
            h[name]["shape"] = shape

        return f"{name} shape {shape}", edit(fn), ("needs",)

    @maker
    def invalid_shape():
        name = rng.choice(names)
        bad = rng.choice([-1, -(2**63), -rng.randint(1, 2**40), 1.0, 2.5, True, False, "2",
                          None, [2], {"d": 2}])  # fmt: skip
        shape = list(header[name]["shape"])
        shape.insert(rng.randint(0, len(shape)), bad)
        shape = rng.choice([shape, [1] * 33, [*shape, 1, 1] * 12] + ([] if bad == [2] else [bad]))

        def fn(h):
            h[name]["shape"] = shape

        return f"{name} shape {shape!r}", edit(fn), ("invalid shape",)

    @maker
    def negative_zero():
        """JSON `-0` is a float to serde_json, so safetensors refuses it; so must we."""
        name = rng.choice([k for k in names if header[k]["data_offsets"][0] == 0] + names)
        field = "data_offsets" if header[name]["data_offsets"][0] == 0 else "shape"
        values = list(header[name][field])
        if field == "data_offsets":
            new = f"[-0, {values[1]}]"
        else:
            new = "[" + ", ".join(["-0", *map(str, values)]) + "]"
        entry = json.dumps({name: header[name]})[1:-1]
        changed = entry.replace(f'"{field}": {json.dumps(values)}', f'"{field}": {new}')
        assert changed != entry
        raw = json.dumps(header).replace(entry, changed).encode()
        return f"{name} {field} {new}", make_blob(None, data, raw=raw), ("invalid",)

    @maker
    def unknown_dtype():
        name = rng.choice(names)
        dtype = rng.choice(["F8_E4M3", "F8_E5M2", "C64", "U16", "U32", "U64", "f32", "float32",
                            "", "F32 ", "BOOL\u0000", 4, None, ["F32"], {"F32": 1}])  # fmt: skip

        def fn(h):
            h[name]["dtype"] = dtype

        return f"{name} dtype {dtype!r}", edit(fn), ("unknown dtype",)

    @maker
    def non_dict_header():
        value = rng.choice([[], [header], "header", 0, 1.5, None, True, [[1, 2]]])
        return f"header {value!r}"[:80], make_blob(value, data), ("not a JSON object",)

    @maker
    def not_starting_with_brace():
        raw = rng.choice([b" ", b"\n", b"\t", b"\xef\xbb\xbf"]) + json.dumps(header).encode()
        return (
            "header with leading bytes",
            make_blob(None, data, raw=raw),
            (
                "not a JSON object",
                "not valid JSON",
            ),
        )

    @maker
    def header_length():
        raw = json.dumps(header).encode()
        cap = MAX_SAFETENSORS_HEADER_BYTES
        kind = rng.randrange(4)
        if kind == 0:
            value = rng.choice([cap + 1, 2**63, 2**64 - 1, rng.randrange(cap + 1, 2**64)])
            return (
                f"header length {value}",
                make_blob(None, data, raw=raw, length=value),
                ("over the",),
            )
        if kind == 1:
            value = rng.randrange(len(raw) + data_len + 1, cap + 1)
            return (
                f"header length {value} past the blob",
                make_blob(None, data, raw=raw, length=value),
                ("truncated",),
            )
        if kind == 2:
            value = rng.randrange(len(raw))
            return (
                f"header length {value} (short)",
                make_blob(None, data, raw=raw, length=value),
                (),
            )
        # the 8-byte length written twice
        blob2 = U64.pack(len(raw)) + U64.pack(len(raw)) + raw + data
        return "header length duplicated", blob2, ()

    @maker
    def duplicate_keys():
        name = rng.choice(names)
        raw = json.dumps(header)
        entry = json.dumps({name: header[name]})[1:-1]
        if rng.random() < 0.5:
            raw = raw.replace(entry, entry + ", " + entry)
        else:
            dtype = f'"dtype": "{header[name]["dtype"]}"'
            raw = raw.replace(entry, entry.replace(dtype, dtype + ", " + dtype))
        return (
            f"duplicate key in {name}",
            make_blob(None, data, raw=raw.encode()),
            ("duplicate key",),
        )

    @maker
    def trailing_data():
        extra = rng.randbytes(rng.randint(1, 64))
        return f"{len(extra)} extra data bytes", make_blob(header, data + extra), ("unused bytes",)

    @maker
    def missing_data():
        cut = rng.randint(1, data_len)
        return f"data short by {cut}", make_blob(header, data[:-cut]), ("outside",)

    @maker
    def gap():
        a = rng.choice(sized)
        k = rng.randint(1, 16)
        h = json.loads(json.dumps(header))
        for entry in h.values():  # move everything after `a` on by k bytes, data included
            if entry["data_offsets"][0] >= header[a]["data_offsets"][1]:
                entry["data_offsets"] = [x + k for x in entry["data_offsets"]]
        return f"gap of {k} after {a}", make_blob(h, data + bytes(k)), ("gap", "unused")

    @maker
    def bad_entry():
        name = rng.choice(names)
        kind = rng.randrange(4)

        def fn(h):
            if kind == 0:
                del h[name][rng.choice(["dtype", "shape", "data_offsets"])]
            elif kind == 1:
                h[name]["extra"] = 1
            elif kind == 2:
                h[name] = rng.choice([None, [], "F32", 3, [h[name]]])
            else:
                h[name]["data_offsets"] = rng.choice([[0], [0, 1, 2], [0.0, 4.0], None, "0,4"])

        return (
            f"{name} entry edit {kind}",
            edit(fn),
            (
                "needs exactly",
                "invalid data offsets",
            ),
        )

    @maker
    def bad_metadata_entry():
        value = rng.choice([{"a": 1}, {"a": None}, {"a": ["b"]}, ["a"], "a", 1, None,
                            {"\ud800": "x"}, {"x": "\udfff"}])  # fmt: skip

        def fn(h):
            h["__metadata__"] = value

        return f"__metadata__ {value!r}", edit(fn), ("__metadata__",)

    @maker
    def constants():
        name = rng.choice(names)
        token = rng.choice(["NaN", "Infinity", "-Infinity"])
        entry = json.dumps({name: header[name]})[1:-1]
        changed = entry.replace('"shape": [', f'"shape": [{token}, ').replace(", ]", "]")
        raw = json.dumps(header).replace(entry, changed)
        return f"header with {token}", make_blob(None, data, raw=raw.encode()), (f"{token}",)

    @maker
    def lone_surrogate_name():
        name = rng.choice(names)
        bad = rng.choice(["\ud800", "a\udc00b", "\udfff"])

        def fn(h):
            h[bad] = h.pop(name)

        return f"tensor name {bad!r}", edit(fn), ("not valid Unicode",)

    @maker
    def invalid_json():
        raw = json.dumps(header).encode()
        kind = rng.randrange(3)
        if kind == 0:
            raw = raw[: rng.randrange(1, len(raw))]
        elif kind == 1:
            at = rng.randrange(len(raw))
            raw = raw[:at] + rng.choice([b"\xff", b"\x00", b"\xc0\xaf", b"\x80"]) + raw[at:]
        else:
            raw = b"{" * rng.randint(2_000, 50_000)
        return f"invalid header JSON ({kind})", make_blob(None, data, raw=raw), ()

    @maker
    def tiny_blob():
        blob2 = rng.choice([b"", rng.randbytes(rng.randint(1, 7)), U64.pack(0), U64.pack(1)])
        return f"weights blob {blob2!r}", blob2, ()

    @maker
    def pickled_blob():
        payload = pickle.dumps({"w": [1.0, 2.0]}, protocol=rng.randint(0, 5))
        return "weights blob is a plain pickle", payload, ()

    for i in range(n):
        description, new_blob, expect = makers[i % len(makers)]()
        yield description, build_file(meta, new_blob), "refuse", expect


def equivalent_mutants(rng: random.Random, good: bytes, n: int) -> Iterator[Mutant]:
    """Checksum recomputed and the bytes changed, but the file means the same (or is valid)."""
    _, meta, blob = split_file(good)
    header, data = split_blob(blob)
    for i in range(n):
        kind = i % 4
        if kind == 0:  # header keys reordered, re-spaced and padded as safetensors may write it
            items = list(header.items())
            rng.shuffle(items)
            raw = json.dumps(dict(items), indent=rng.choice([None, 1]), separators=rng.choice(
                [None, (",", ":")])).encode() + b" " * rng.randint(0, 7)  # fmt: skip
            yield (
                "header re-serialised",
                build_file(meta, make_blob(None, data, raw=raw)),
                "same",
                (),
            )
        elif kind == 1:  # metadata re-serialised
            value = json.loads(meta)
            raw = json.dumps(value, indent=rng.choice([None, 2]), sort_keys=True).encode()
            yield "metadata re-serialised", build_file(raw, blob), "same", ()
        elif kind == 2:  # a string-to-string __metadata__ in the weights header is allowed
            raw = json.dumps({"__metadata__": {"format": "pt"}, **header}).encode()
            yield (
                "header with __metadata__",
                build_file(meta, make_blob(None, data, raw=raw)),
                "same",
                (),
            )
        else:  # a flipped data byte with a fixed checksum is undetectable: it loads
            at = rng.randrange(len(data))
            changed = data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]
            header_raw = blob[: len(blob) - len(data)]  # length field and JSON, unchanged
            yield f"data byte {at} flipped", build_file(meta, header_raw + changed), "data", ()


# --- the fuzz test -------------------------------------------------------------------------


def _attempt(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except ModelFileError as exc:
        return "refused", str(exc)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3 panics are BaseException; report, never crash the run
        return "crashed", f"{type(exc).__name__}: {exc}"


def _problem(
    mutant: Mutant, path: Path, good: bytes, original: tuple[bytes, dict, dict]
) -> str | None:
    description, data, expectation, messages = mutant
    _, metadata, tensors = original
    path.write_bytes(data)
    loaded = _attempt(lambda: load_model_file(path))
    card = _attempt(lambda: read_model_metadata(path))
    for what, (status, value) in (("load_model_file", loaded), ("read_model_metadata", card)):
        if status == "crashed":
            return f"{what} raised a non-ModelFileError: {value}"
    if expectation == "bytes":
        expectation = "same" if data == good else "refuse"
    if loaded[0] == "refused" or card[0] == "refused":
        if (loaded[0], card[0]) != ("refused", "refused") or loaded[1] != card[1]:
            return f"load and card disagree: {loaded[0]} {loaded[1]!r} vs {card[0]} {card[1]!r}"
        if expectation != "refuse":
            return f"refused a file that should load: {loaded[1]}"
        if str(path) not in loaded[1]:
            return f"refusal does not name the file: {loaded[1]}"
        if messages and not any(m in loaded[1] for m in messages):
            return f"refusal {loaded[1]!r} says none of {messages}"
        return None
    if expectation == "refuse":
        return "loaded a file that should have been refused"
    got_meta, got = loaded[1]
    if got_meta != metadata or card[1] != metadata:
        return f"metadata changed: {got_meta!r} / {card[1]!r}"
    if set(got) != set(tensors):
        return f"tensor names changed: {sorted(got)}"
    differing = 0
    for name, tensor in tensors.items():
        if got[name].dtype != tensor.dtype or got[name].shape != tensor.shape:
            return f"tensor {name} changed dtype/shape"
        differing += raw_bytes(got[name]) != raw_bytes(tensor)
    if differing != (1 if expectation == "data" else 0):
        return f"{differing} tensors differ in value"
    return None


def test_fuzzed_files_are_refused_cleanly(original, tmp_path: Path, monkeypatch) -> None:
    good = original[0]
    rng = random.Random(SEED)
    generators = [
        (truncations, 600),
        (bit_flips, 1200),
        (byte_edits, 500),
        (length_fields, 300),
        (bad_metadata, 300),
        (header_mutants, 1100),
        (equivalent_mutants, 120),
    ]
    path = tmp_path / "mutant.distill"
    failures: list[str] = []
    count = must_refuse = 0
    for generate, n in generators:
        for mutant in generate(rng, good, n):
            count += 1
            must_refuse += mutant[2] == "refuse" or (mutant[2] == "bytes" and mutant[1] != good)
            monkeypatch.setattr(mf, "_CHUNK", rng.choice(CHUNKS))
            problem = _problem(mutant, path, good, original)
            if problem is not None:
                failures.append(f"[{generate.__name__}] {mutant[0]}: {problem}")
    summary = f"{len(failures)} of {count} mutants misbehaved:\n" + "\n".join(failures[:25])
    assert not failures, summary
    assert count >= 3000
    assert must_refuse >= 2900


def test_the_fuzz_is_reproducible(original) -> None:
    good = original[0]
    first = [m[1] for m in header_mutants(random.Random(SEED), good, 60)]
    again = [m[1] for m in header_mutants(random.Random(SEED), good, 60)]
    assert first == again
    assert len(set(first)) > 40  # and actually varied


# --- pickles with a code-running payload ---------------------------------------------------


class _RunsCode:
    """Unpickling this runs code: the attack a pickle-based model file would allow."""

    def __init__(self, marker: Path, how: str) -> None:
        self.marker, self.how = marker, how

    def __reduce__(self):
        if self.how == "system":
            return os.system, (f"touch {shlex.quote(str(self.marker))}",)
        return Path.touch, (self.marker,)


def _ways() -> list[str]:
    return ["system", "touch"] if os.name == "posix" else ["touch"]


@pytest.mark.parametrize("how", _ways())
def test_payload_is_live(tmp_path: Path, how: str) -> None:
    """Control: the payload used below really does run code when unpickled."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_RunsCode(marker, how)))
    assert marker.exists()


@pytest.mark.parametrize("how", _ways())
def test_malicious_pickles_never_run(original, tmp_path: Path, how: str) -> None:
    good = original[0]
    _, meta, blob = split_file(good)
    header, data = split_blob(blob)
    marker = tmp_path / "pwned"
    evil = _RunsCode(marker, how)
    pickles = [pickle.dumps(evil, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)]
    torch_saves = []
    for zipped in (True, False):
        saved = tmp_path / f"torch_{zipped}.pt"
        torch.save({"w": torch.ones(2), "x": evil}, saved, _use_new_zipfile_serialization=zipped)
        torch_saves.append(saved.read_bytes())
    assert not marker.exists()  # pickling alone runs nothing

    files: dict[str, bytes] = {}
    for i, payload in enumerate(pickles + torch_saves):
        files[f"whole file is pickle {i}"] = payload
        files[f"weights blob is pickle {i}"] = build_file(meta, payload)
        files[f"metadata is pickle {i}"] = build_file(payload, blob)
        files[f"pickle after safetensors header {i}"] = build_file(meta, make_blob(header, payload))
        files[f"pickle with magic prepended {i}"] = MAGIC + payload
    path = tmp_path / "evil.distill"
    for description, data in files.items():
        path.write_bytes(data)
        for reader in (load_model_file, read_model_metadata):
            try:
                reader(path)
            except ModelFileError:
                pass
            except Exception as exc:  # noqa: BLE001 - any other type is the failure we report
                pytest.fail(f"{description}: {reader.__name__} raised {type(exc).__name__}: {exc}")
            else:
                pytest.fail(f"{description}: {reader.__name__} accepted it")
            assert not marker.exists(), f"{description}: the payload ran"
        if description.startswith("whole file"):
            assert not is_model_file(path)

    # Pickle bytes stored as an ordinary uint8 tensor are just data: they load, and run nothing.
    payload = pickles[-1]
    as_tensor = torch.tensor(list(payload), dtype=torch.uint8)
    stored = build_file(meta, safetensors.torch.save({"blob": as_tensor}))
    path.write_bytes(stored)
    _, tensors = load_model_file(path)
    assert bytes(tensors["blob"].tolist()) == payload
    assert not marker.exists()
