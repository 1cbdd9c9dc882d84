"""Augmentation: pitch-shifted takes of each file, and crops that put a sound in context."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from distill.audio.augment import PITCH_SHIFTS, augments, pitch_shift, pitch_shifted_mels
from distill.audio.dataset import scan_dataset
from distill.audio.mel_config import MelConfig
from distill.audio.synth import tone
from distill.audio.windows import CropSampler


def _peak_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[spectrum.argmax()])


def test_a_shift_up_raises_the_pitch_and_shortens_the_sound() -> None:
    rate = 8000
    audio = tone(440.0, 1.0, rate)
    up = pitch_shift(audio, 2)
    assert math.isclose(_peak_hz(up, rate), 440 * 2 ** (2 / 12), rel_tol=0.01)
    assert math.isclose(len(up), len(audio) / 2 ** (2 / 12), rel_tol=0.01)
    down = pitch_shift(audio, -1)
    assert math.isclose(_peak_hz(down, rate), 440 * 2 ** (-1 / 12), rel_tol=0.01)


def test_takes_are_made_once_and_read_back_from_the_mel_cache(tmp_path: Path) -> None:
    (tmp_path / "set").mkdir()
    sf.write(tmp_path / "set" / "a.wav", tone(300.0, 0.5, 8000), 8000)
    config = MelConfig(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32)
    report = scan_dataset(tmp_path / "set", config, tmp_path / "cache")
    first = pitch_shifted_mels(report.usable, config)
    assert len(first) == 1 and len(first[0]) == len(PITCH_SHIFTS)
    cached = sorted(p.name for p in (tmp_path / "cache").glob("*.pitch*.npy"))
    assert len(cached) == len(PITCH_SHIFTS)
    (tmp_path / "set" / "a.wav").unlink()  # a second read cannot decode: it must use the cache
    second = pitch_shifted_mels(report.usable, config)
    for a, b in zip(first[0], second[0], strict=True):
        assert np.array_equal(a, b)
    frames = [m.shape[1] for m in first[0]]
    assert frames == sorted(frames, reverse=True)  # higher takes are shorter


def test_only_small_and_mid_sized_sets_get_takes() -> None:
    assert augments(14) and augments(100) and not augments(101)


def test_context_crops_put_silence_or_another_sound_ahead_and_count_it() -> None:
    pad = -11.5
    sound = torch.zeros(4, 6)  # a sound of six frames, all 0 (the pad value is -11.5)
    other = torch.ones(4, 10)
    sampler = CropSampler([sound, other], 16, pad, torch.Generator().manual_seed(0), context=True)
    crops = sampler.batch(256)
    first = crops.mels[:, 0, 0]
    after_silence = (first == pad) & (crops.audible[:, 0] == 1)
    assert after_silence.any(), "some crops start with counted silence"
    plain = CropSampler([sound, other], 16, pad, torch.Generator().manual_seed(0))
    assert not (plain.batch(256).mels[:, 0, 0] == pad).any()
    # a crop of the short sound after another sound's end: ones, then the sound's zeros
    joined = [
        m for m, a in zip(crops.mels, crops.audible, strict=True)
        if m[0, 0] == 1 and (m[0] == 0).any() and a[: int((m[0] != pad).sum())].all()
    ]  # fmt: skip
    assert joined, "some crops join another sound's end to this one"


def test_a_file_with_takes_is_cropped_from_them_about_half_the_time() -> None:
    own = torch.zeros(2, 8)
    takes = [torch.full((2, 8), float(i + 1)) for i in range(4)]
    sampler = CropSampler([own], 8, -11.5, torch.Generator().manual_seed(0), [takes])
    values = sampler.batch(400).mels[:, 0, 0]
    share = float((values != 0).float().mean())
    assert 0.4 < share < 0.6
    assert set(values.unique().tolist()) == {0.0, 1.0, 2.0, 3.0, 4.0}
