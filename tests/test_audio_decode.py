"""Tests for distill.audio.decode: every fixture is generated here into tmp_path."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from distill.audio.decode import (
    SUPPORTED_EXTENSIONS,
    AudioDecodeError,
    load_audio,
    write_wav,
)

TARGET_SR = 22050


def tone(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(audio: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / sr)[spectrum.argmax()])


def write_fixture(path: Path, audio: np.ndarray, sr: int, **kwargs: str) -> Path:
    sf.write(path, audio, sr, **kwargs)
    return path


def test_supported_extensions_are_lowercase_dotted() -> None:
    assert SUPPORTED_EXTENSIONS == {
        ".wav", ".flac", ".aif", ".aiff", ".aifc", ".ogg", ".oga", ".opus", ".mp3"
    }  # fmt: skip


@pytest.mark.parametrize("sr", [8000, 11025, 16000, 22050, 44100, 48000, 96000])
def test_mixed_sample_rates_resample_to_target(tmp_path: Path, sr: int) -> None:
    path = write_fixture(tmp_path / f"tone_{sr}.wav", tone(440, sr, 0.5), sr)
    audio = load_audio(path, TARGET_SR)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - TARGET_SR * 0.5) <= 1
    assert dominant_frequency(audio, TARGET_SR) == pytest.approx(440, abs=3)
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("sr", [8000, 44100, 96000])
def test_twenty_millisecond_file(tmp_path: Path, sr: int) -> None:
    path = write_fixture(tmp_path / "short.wav", tone(1000, sr, 0.02), sr)
    audio = load_audio(path, TARGET_SR)
    assert audio.shape == (441,)
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0


def test_stereo_is_mixed_to_mean_of_channels(tmp_path: Path) -> None:
    left, right = tone(300, TARGET_SR, 0.25, 0.6), tone(300, TARGET_SR, 0.25, 0.2)
    path = write_fixture(
        tmp_path / "stereo.wav", np.stack([left, right], axis=1), TARGET_SR, subtype="FLOAT"
    )
    audio = load_audio(path, TARGET_SR)
    np.testing.assert_allclose(audio, (left + right) / 2, atol=1e-6)


def test_flac_is_lossless_at_same_rate(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).uniform(-0.9, 0.9, 4000).astype(np.float32)
    path = write_fixture(tmp_path / "noise.flac", noise, TARGET_SR, subtype="PCM_16")
    np.testing.assert_allclose(load_audio(path, TARGET_SR), noise, atol=1 / 32768 + 1e-7)


@pytest.mark.parametrize(
    ("name", "sr", "kwargs"),
    [
        ("tone.ogg", 44100, {"format": "OGG", "subtype": "VORBIS"}),
        ("tone.opus", 48000, {"format": "OGG", "subtype": "OPUS"}),
        ("tone.mp3", 44100, {"format": "MP3", "subtype": "MPEG_LAYER_III"}),
        ("tone.aiff", 16000, {"format": "AIFF", "subtype": "PCM_16"}),
        ("TONE.WAV", 16000, {"format": "WAV", "subtype": "PCM_24"}),
    ],
)
def test_compressed_and_other_containers(
    tmp_path: Path, name: str, sr: int, kwargs: dict[str, str]
) -> None:
    path = write_fixture(tmp_path / name, tone(660, sr, 1.0), sr, **kwargs)
    audio = load_audio(path, TARGET_SR)
    # Lossy codecs add encoder delay/padding, so only roughly one second.
    assert abs(len(audio) - TARGET_SR) < TARGET_SR * 0.1
    assert dominant_frequency(audio, TARGET_SR) == pytest.approx(660, abs=3)


def test_long_file_is_read_whole(tmp_path: Path) -> None:
    sr, seconds = 16000, 180
    noise = np.random.default_rng(1).uniform(-0.5, 0.5, sr * seconds).astype(np.float32)
    path = write_fixture(tmp_path / "long.wav", noise, sr, subtype="PCM_16")
    audio = load_audio(path, TARGET_SR)
    assert abs(len(audio) - TARGET_SR * seconds) <= 1


def test_wav_truncated_mid_data_returns_frames_present(tmp_path: Path) -> None:
    original = tone(440, 16000, 1.0)
    full = write_fixture(tmp_path / "full.wav", original, 16000, subtype="PCM_16")
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: 44 + 2 * 2000 + 1])  # 2000 whole frames plus a stray byte
    audio = load_audio(cut, 16000)
    assert len(audio) == 2000
    np.testing.assert_allclose(audio, original[:2000], atol=1 / 32768 + 1e-7)


def test_wav_with_partial_header_raises(tmp_path: Path) -> None:
    full = write_fixture(tmp_path / "full.wav", tone(440, 16000, 0.1), 16000)
    truncated = tmp_path / "header_only.wav"
    truncated.write_bytes(full.read_bytes()[:20])
    with pytest.raises(AudioDecodeError) as info:
        load_audio(truncated, TARGET_SR)
    assert info.value.reason.startswith("unreadable: ")


def test_text_file_named_wav_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("definitely not audio\n" * 20)
    with pytest.raises(AudioDecodeError) as info:
        load_audio(path, TARGET_SR)
    err = info.value
    assert err.path == path
    assert err.reason.startswith("unreadable: ") and len(err.reason) > len("unreadable: ")
    assert str(path) not in err.reason  # short phrase, not soundfile's full message
    assert str(err) == f"notes.wav: {err.reason}"


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match=r"^gone\.flac: unreadable: "):
        load_audio(tmp_path / "gone.flac", TARGET_SR)


@pytest.mark.parametrize(("name", "suffix"), [("clip.m4a", ".m4a"), ("clip.TXT", ".txt")])
def test_unsupported_extension_checked_before_opening(
    tmp_path: Path, name: str, suffix: str
) -> None:
    # The file does not exist: an extension check that ran after opening would
    # report "unreadable" instead.
    with pytest.raises(AudioDecodeError) as info:
        load_audio(tmp_path / name, TARGET_SR)
    assert info.value.reason == f"unsupported format ({suffix})"


def test_zero_frame_wav_is_empty(tmp_path: Path) -> None:
    path = write_fixture(tmp_path / "empty.wav", np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(AudioDecodeError) as info:
        load_audio(path, TARGET_SR)
    assert info.value.reason == "empty (no samples)"


def test_non_finite_samples_become_zero_and_range_is_clipped(tmp_path: Path) -> None:
    samples = np.array([0.25, np.nan, np.inf, -np.inf, 3.0, -2.0], dtype=np.float32)
    path = write_fixture(tmp_path / "bad.wav", samples, 16000, subtype="FLOAT")
    audio = load_audio(path, 16000)
    np.testing.assert_array_equal(audio, [0.25, 0.0, 0.0, 0.0, 1.0, -1.0])


def test_decode_error_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(AudioDecodeError(Path("/x/a.wav"), "empty (no samples)")))
    assert (err.path, err.reason, str(err)) == (Path("/x/a.wav"), "empty (no samples)", "a.wav: empty (no samples)")  # fmt: skip


def test_write_wav_is_16_bit_clipped_and_creates_folders(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "out.wav"
    write_wav(path, np.array([0.5, 2.0, -2.0, np.nan], dtype=np.float32), 16000)
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        "WAV", "PCM_16", 16000, 1
    )  # fmt: skip
    written, _ = sf.read(path, dtype="int16")
    np.testing.assert_array_equal(written, [16384, 32767, -32768, 0])


def test_write_wav_accepts_tensor_and_round_trips(tmp_path: Path) -> None:
    audio = torch.from_numpy(tone(440, TARGET_SR, 0.2)).unsqueeze(0)  # (1, samples)
    path = tmp_path / "out.wav"
    write_wav(str(path), audio, TARGET_SR)
    np.testing.assert_allclose(load_audio(path, TARGET_SR), audio[0].numpy(), atol=1 / 32768)


def test_write_wav_rejects_multichannel(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mono"):
        write_wav(tmp_path / "x.wav", np.zeros((2, 100), np.float32), TARGET_SR)
