"""The `.distill` container: round trips, refusals with clear messages, atomic writes."""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import wave
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import torch
from container import PRELUDE, U64, build_file, split_file

from distill.models import model_file as mf
from distill.models.model_file import (
    FILE_EXTENSION,
    FORMAT_VERSION,
    MAGIC,
    ModelFileError,
    is_model_file,
    load_model_file,
    read_model_metadata,
    save_model_file,
)


def all_dtype_tensors() -> dict[str, torch.Tensor]:
    """Every stored dtype, with awkward values, plus an empty tensor and scalars."""
    gen = torch.Generator().manual_seed(0)
    floats = torch.tensor(
        [0.0, -0.0, 1.5, float("nan"), float("inf"), float("-inf"), 1e-40, -3.25e38]
    )
    tensors = {
        "f64": torch.randn(3, 4, dtype=torch.float64, generator=gen),
        "f32": floats,
        "f16": torch.tensor([0.0, -0.0, 65504.0, 6e-8, float("nan"), float("-inf")]).half(),
        "bf16": floats.to(torch.bfloat16),
        "i64": torch.tensor([0, -1, 2**63 - 1, -(2**63)], dtype=torch.int64),
        "i32": torch.tensor([[2**31 - 1, -(2**31)]], dtype=torch.int32),
        "i16": torch.tensor([-(2**15), 2**15 - 1], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0], dtype=torch.int8),
        "u8": torch.arange(256, dtype=torch.uint8).reshape(16, 16),
        "bool": torch.tensor([[True, False], [False, True]]),
        "empty": torch.zeros(0, 5),
        "empty_i64": torch.zeros(3, 0, 2, dtype=torch.int64),
        "scalar": torch.tensor(3.5),
        "scalar_bool": torch.tensor(True),
        "wide": torch.randn(2, 3, 4, 5, generator=gen),
        "unicode näme/with.dots": torch.ones(1),
    }
    return tensors


def raw_bytes(t: torch.Tensor) -> bytes:
    """A tensor's exact bytes (NaN payloads and -0.0 included)."""
    return bytes(t.detach().contiguous().reshape(-1).view(torch.uint8).tolist())


def assert_bit_identical(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype, name
        assert got[name].shape == tensor.shape, name
        assert got[name].device.type == "cpu", name
        assert raw_bytes(got[name]) == raw_bytes(tensor), name


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor], dict]:
    tensors = {"w": torch.randn(4, 3), "b": torch.arange(3, dtype=torch.int64)}
    metadata = {"type": "distill-model", "config": {"hidden": 16}, "curve": [1.0, 0.5]}
    path = save_model_file(tmp_path / f"m{FILE_EXTENSION}", tensors, metadata)
    return path, tensors, metadata


def refusal(path: Path, *, metadata_too: bool = True) -> str:
    """The message load_model_file refuses with; read_model_metadata must refuse the same way."""
    with pytest.raises(ModelFileError) as info:
        load_model_file(path)
    message = str(info.value)
    assert str(path) in message  # every refusal names its file
    if metadata_too:
        with pytest.raises(ModelFileError) as meta_info:
            read_model_metadata(path)
        assert str(meta_info.value) == message
    return message


# --- round trips ---------------------------------------------------------------------------


def test_round_trip_is_bit_identical_for_every_dtype(tmp_path: Path) -> None:
    tensors = all_dtype_tensors()
    path = save_model_file(tmp_path / "all.distill", tensors, {"k": 1})
    metadata, loaded = load_model_file(path)
    assert metadata == {"k": 1}
    assert_bit_identical(tensors, loaded)


def test_round_trip_of_awkward_tensors(tmp_path: Path) -> None:
    base = torch.randn(4, 6)
    param = torch.nn.Parameter(torch.randn(3))
    tensors = {
        "transposed": base.t(),  # not contiguous
        "strided": base[:, ::2],
        "tied_a": base,  # shares storage with the views above
        "tied_b": base,
        "param": param,  # requires grad
        "offset_view": base.reshape(-1)[5:9],
    }
    path = save_model_file(str(tmp_path / "awkward.distill"), tensors, {})
    assert isinstance(path, Path)
    _, loaded = load_model_file(path)
    assert_bit_identical(tensors, loaded)
    assert not loaded["param"].requires_grad
    loaded["tied_a"][0, 0] = 123.0  # loaded tensors do not alias each other or the original
    assert loaded["tied_b"][0, 0] != 123.0
    assert base[0, 0] != 123.0


def test_no_tensors_round_trip(tmp_path: Path) -> None:
    path = save_model_file(tmp_path / "none.distill", {}, {"only": "card"})
    assert load_model_file(path) == ({"only": "card"}, {})
    assert read_model_metadata(path) == {"only": "card"}


def test_metadata_round_trip_follows_json(tmp_path: Path) -> None:
    metadata = {
        "config": {"hidden": 16, "levels": [1, 2, 3], "nested": {"deep": {"er": None}}},
        "name": "Grüße – 音 🎵",
        "flags": [True, False, None],
        "big": 2**80,
        "neg": -7,
        "float": 0.1,
        "tuple": (1, 2),  # comes back as a list
        3: "int key",  # comes back as a str key
        "curve": [1.0, float("nan"), float("inf"), float("-inf")],  # diverged runs are kept
        "empty": {},
    }
    path = save_model_file(tmp_path / "meta.distill", {"x": torch.ones(1)}, metadata)
    for got in (read_model_metadata(path), load_model_file(path)[0]):
        curve = got.pop("curve")
        assert math.isnan(curve[1]) and curve[0] == 1.0
        assert curve[2:] == [math.inf, -math.inf]
        expected = dict(metadata, tuple=[1, 2])
        del expected[3], expected["curve"]
        expected["3"] = "int key"
        assert got == expected


def test_layout_matches_the_documented_format(saved) -> None:
    path, tensors, metadata = saved
    data = path.read_bytes()
    magic, version, meta_len = PRELUDE.unpack_from(data)
    assert magic == MAGIC == b"DISTILL\x00"
    assert version == FORMAT_VERSION
    assert json.loads(data[20 : 20 + meta_len]) == metadata
    (weights_len,) = U64.unpack_from(data, 20 + meta_len)
    assert len(data) == 60 + meta_len + weights_len
    assert data[-32:] == hashlib.sha256(data[:-32]).digest()
    assert FILE_EXTENSION == ".distill"
    assert issubclass(ModelFileError, ValueError)


def test_read_model_metadata_matches_load(saved) -> None:
    path, _, metadata = saved
    assert read_model_metadata(path) == metadata == load_model_file(path)[0]


def test_read_model_metadata_streams_large_weights_in_chunks(tmp_path: Path, monkeypatch) -> None:
    """Small chunks make the weights header span many of them; the card must still come back."""
    tensors = {f"layer{i:03d}.weight": torch.randn(8) for i in range(60)}
    path = save_model_file(tmp_path / "chunks.distill", tensors, {"n": 60})
    for chunk in (1, 7, 64, 1000, 1 << 20):
        monkeypatch.setattr(mf, "_CHUNK", chunk)
        assert read_model_metadata(path) == {"n": 60}
    # ...and a corrupted byte deep in the weights is still caught by the streamed checksum.
    data = bytearray(path.read_bytes())
    data[-40] ^= 0x01
    path.write_bytes(bytes(data))
    for chunk in (7, 1 << 20):
        monkeypatch.setattr(mf, "_CHUNK", chunk)
        assert "checksum mismatch" in refusal(path)


def test_read_model_metadata_refuses_what_load_refuses(tmp_path: Path, monkeypatch) -> None:
    """The checksum is fine but the weights are not safetensors: no card for an unloadable file."""
    path = tmp_path / "bad_weights.distill"
    cases = {
        b"": "truncated",
        b"short": "truncated",
        b"not a safetensors blob": "weights header length",
        U64.pack(9) + b'{"a": 1} ': "needs exactly dtype, shape and data_offsets",
        U64.pack(2) + b"{}" + b"junk": "4 unused bytes",
    }
    for blob, expected in cases.items():
        path.write_bytes(build_file(b'{"type": "x"}', blob))
        for chunk in (3, 1 << 20):
            monkeypatch.setattr(mf, "_CHUNK", chunk)
            assert expected in refusal(path)


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    ["1", "magic", "magic+1", "version", "meta_len", "meta", "meta_end", "weights_len",
     "weights", "checksum", "last"],
)  # fmt: skip
def test_truncated_file_is_refused(saved, where: str) -> None:
    path = saved[0]
    data = path.read_bytes()
    meta_len = PRELUDE.unpack_from(data)[2]
    cuts = {
        "1": 1, "magic": 8, "magic+1": 9, "version": 10, "meta_len": 19,
        "meta": 20 + meta_len // 2, "meta_end": 20 + meta_len, "weights_len": 24 + meta_len,
        "weights": len(data) - 100, "checksum": len(data) - 16, "last": len(data) - 1,
    }  # fmt: skip
    path.write_bytes(data[: cuts[where]])
    assert "truncated" in refusal(path)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.distill"
    path.write_bytes(b"")
    message = refusal(path)
    assert "empty file" in message and "not a distill model file" in message
    assert not is_model_file(path)


@pytest.mark.parametrize("region", ["metadata", "weights", "checksum"])
def test_corrupted_byte_fails_the_checksum(saved, region: str) -> None:
    path = saved[0]
    data = bytearray(path.read_bytes())
    meta_len = PRELUDE.unpack_from(data)[2]
    index = {"metadata": 20 + meta_len // 2, "weights": len(data) - 50, "checksum": -1}[region]
    data[index] ^= 0x10
    path.write_bytes(bytes(data))
    assert "checksum mismatch: the file is corrupted" in refusal(path)


def test_corrupted_magic_and_version_bytes(saved) -> None:
    path = saved[0]
    good = path.read_bytes()
    path.write_bytes(b"X" + good[1:])
    assert "not a distill model file" in refusal(path)
    path.write_bytes(good[:8] + b"\x03" + good[9:])
    assert "unsupported format version 3" in refusal(path)


def _wav_bytes(path: Path) -> bytes:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 800)
    return path.read_bytes()


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    wav = tmp_path / "sound.distill"
    _wav_bytes(wav)
    png = tmp_path / "image.distill"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(40))
    archive = tmp_path / "archive.distill"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("model.bin", b"weights")
    text = tmp_path / "notes.distill"
    text.write_text("just some text that happens to be long enough\n")
    safetensors_file = tmp_path / "raw.distill"
    safetensors_file.write_bytes(safetensors.torch.save({"a": torch.ones(2)}))
    short = tmp_path / "short.distill"
    short.write_bytes(b"MZ")
    for path in (wav, png, archive, text, safetensors_file, short):
        assert "not a distill model file (bad magic bytes)" in refusal(path), path
        assert not is_model_file(path)


@pytest.mark.parametrize("zipped", [True, False])
def test_torch_save_pickle_is_refused(tmp_path: Path, zipped: bool) -> None:
    path = tmp_path / "pickled.distill"
    torch.save({"w": torch.ones(3)}, path, _use_new_zipfile_serialization=zipped)
    assert "not a distill model file" in refusal(path)
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    assert "not a distill model file" in refusal(path)


@pytest.mark.parametrize("version", [0, 3, 255, 2**32 - 1])
def test_other_format_versions_are_refused(saved, version: int) -> None:
    path = saved[0]
    _, meta, blob = split_file(path.read_bytes())
    path.write_bytes(build_file(meta, blob, version))  # checksum valid: only the version is off
    message = refusal(path)
    assert f"unsupported format version {version}" in message
    assert f"reads versions 1, {FORMAT_VERSION}" in message


@pytest.mark.parametrize("extra", [b"\x00", b"x" * 100, bytes(32)])
def test_trailing_bytes_are_refused(saved, extra: bytes) -> None:
    path = saved[0]
    path.write_bytes(path.read_bytes() + extra)
    assert f"trailing bytes after checksum ({len(extra)} bytes)" in refusal(path)


def test_length_fields_are_checked_before_reading(saved) -> None:
    path = saved[0]
    good = path.read_bytes()
    version, meta, blob = split_file(good)
    huge_meta = PRELUDE.pack(MAGIC, version, 2**64 - 1) + good[20:]
    path.write_bytes(huge_meta)
    assert f"over the {mf.MAX_METADATA_BYTES} limit" in refusal(path)
    past_end = PRELUDE.pack(MAGIC, version, len(good)) + good[20:]
    path.write_bytes(past_end)
    assert "truncated: expected" in refusal(path)
    head = PRELUDE.pack(MAGIC, version, len(meta)) + meta
    path.write_bytes(head + U64.pack(2**64 - 1) + good[len(head) + 8 :])
    assert "truncated" in refusal(path)
    path.write_bytes(head + U64.pack(len(blob) - 10) + good[len(head) + 8 :])
    assert "trailing bytes after checksum (10 bytes)" in refusal(path)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        (b"[1, 2]", "metadata is a JSON list, not an object"),
        (b'"card"', "metadata is a JSON str, not an object"),
        (b"null", "metadata is a JSON NoneType, not an object"),
        (b"{bad json", "metadata is not valid JSON"),
        (b"\xff\xfe{}", "metadata is not valid JSON"),
        (b'{"a": 1, "a": 2}', "metadata has a duplicate key"),
        (b"[" * 100_000, "metadata is not valid JSON"),
    ],
)
def test_bad_metadata_with_a_valid_checksum_is_refused(saved, meta: bytes, expected: str) -> None:
    path = saved[0]
    _, _, blob = split_file(path.read_bytes())
    path.write_bytes(build_file(meta, blob))
    assert expected in refusal(path)


def test_not_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model_file(tmp_path / "missing.distill")
    with pytest.raises(ModelFileError, match="no such model file"):
        read_model_metadata(tmp_path / "missing.distill")
    with pytest.raises(ModelFileError, match="is a folder, not a model file"):
        load_model_file(tmp_path)
    with pytest.raises(ModelFileError, match="is a folder, not a model file"):
        read_model_metadata(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.timeout(20)
def test_named_pipe_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.distill"
    os.mkfifo(fifo)
    assert not is_model_file(fifo)
    assert "is not a regular file" in refusal(fifo)


# --- saving --------------------------------------------------------------------------------


def test_save_refuses_bad_input_before_touching_disk(tmp_path: Path) -> None:
    path = tmp_path / "m.distill"
    with pytest.raises(TypeError, match="does not store|do not store"):
        save_model_file(path, {"c": torch.ones(2, dtype=torch.complex64)}, {})
    with pytest.raises(TypeError, match="str names"):
        save_model_file(path, {1: torch.ones(2)}, {})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="str names"):
        save_model_file(path, {"x": [1.0]}, {})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="metadata must be a dict"):
        save_model_file(path, {}, [("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        save_model_file(path, {}, {"path": Path("x")})
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        save_model_file(path, {}, loop)
    with pytest.raises(ValueError, match="limit"):
        save_model_file(path, {}, {"big": "x" * (mf.MAX_METADATA_BYTES + 1)})
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_existing_file(saved) -> None:
    path, tensors, metadata = saved
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_model_file(path, {"c": torch.ones(2, dtype=torch.complex128)}, {"new": 1})
    with pytest.raises(TypeError):
        save_model_file(path, {"w": torch.ones(2)}, {"new": object()})
    assert path.read_bytes() == before
    assert list(path.parent.iterdir()) == [path]
    assert load_model_file(path)[0] == metadata


@pytest.mark.parametrize("fault", ["replace", "fsync", "write", "interrupt"])
def test_write_fault_leaves_no_temp_file_and_the_old_file_intact(
    saved, monkeypatch, fault: str
) -> None:
    path, tensors, metadata = saved
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt if fault == "interrupt" else OSError(28, "No space left")

    if fault in ("replace", "interrupt"):
        monkeypatch.setattr(mf.os, "replace", boom)
    elif fault == "fsync":
        monkeypatch.setattr(mf.os, "fsync", boom)
    else:
        real_fdopen = os.fdopen

        class FailingFile:
            def __init__(self, fd: int, mode: str) -> None:
                self._f = real_fdopen(fd, mode)

            def __enter__(self):
                return self

            def __exit__(self, *exc) -> None:
                self._f.close()

            def write(self, chunk: bytes) -> int:
                self._f.write(chunk[: len(chunk) // 2])
                raise OSError(28, "No space left")

        monkeypatch.setattr(mf.os, "fdopen", FailingFile)
    expected = KeyboardInterrupt if fault == "interrupt" else OSError
    with pytest.raises(expected):
        save_model_file(path, {"other": torch.zeros(1000)}, {"new": True})
    monkeypatch.undo()
    assert list(path.parent.iterdir()) == [path]  # no .tmp left behind
    assert path.read_bytes() == before
    loaded_meta, loaded = load_model_file(path)
    assert loaded_meta == metadata
    assert_bit_identical(tensors, loaded)


def test_overwrite_replaces_the_file_and_leaves_nothing_else(saved) -> None:
    path, _, _ = saved
    new = {"z": torch.full((2, 2), 7.0)}
    save_model_file(path, new, {"version": 2})
    assert list(path.parent.iterdir()) == [path]
    metadata, loaded = load_model_file(path)
    assert metadata == {"version": 2}
    assert_bit_identical(new, loaded)


def test_save_into_a_missing_folder_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        save_model_file(tmp_path / "nope" / "m.distill", {}, {})
    assert list(tmp_path.iterdir()) == []


# --- is_model_file -------------------------------------------------------------------------


def test_is_model_file(saved, tmp_path: Path) -> None:
    path = saved[0]
    assert is_model_file(path)
    assert is_model_file(str(path))
    assert not is_model_file(tmp_path / "missing.distill")
    assert not is_model_file(tmp_path)  # a folder
    prefix = tmp_path / "prefix.distill"
    prefix.write_bytes(MAGIC[:5])
    assert not is_model_file(prefix)
    renamed = tmp_path / "renamed.bin"
    renamed.write_bytes(path.read_bytes())
    assert is_model_file(renamed)  # recognised by content, not extension
    # A sniff only: a corrupt file with the right magic still says True, and load refuses it.
    corrupt = tmp_path / "corrupt.distill"
    corrupt.write_bytes(path.read_bytes()[:-1])
    assert is_model_file(corrupt)
    assert "truncated" in refusal(corrupt)
