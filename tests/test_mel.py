"""Tests for distill.audio.mel, checked against librosa where librosa has an equivalent."""

from __future__ import annotations

import dataclasses
import math

import librosa
import numpy as np
import pytest
import torch

from distill.audio.mel import (
    MelSpectrogram,
    griffin_lim,
    griffin_lim_reach,
    mel_filterbank,
    mel_to_audio,
)
from distill.audio.mel_config import MelConfig

SR = 22050


def chirp_with_noise(n: int, sr: int = SR) -> np.ndarray:
    t = np.arange(n) / sr
    chirp = 0.5 * np.sin(2 * np.pi * (200 * t + 2000 * t**2))
    noise = 0.05 * np.random.default_rng(0).standard_normal(n)
    return (chirp + noise).astype(np.float32)


def librosa_log_mel(y: np.ndarray, config: MelConfig) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        fmin=config.f_min,
        fmax=config.f_max,
        power=1.0,
        center=True,
        pad_mode="reflect",
        window="hann",
    )
    return np.log(np.maximum(mel, config.log_floor))


def spectral_convergence(audio: torch.Tensor, target: torch.Tensor, n_fft: int, hop: int) -> float:
    window = torch.hann_window(n_fft)
    rebuilt = torch.stft(audio, n_fft, hop, window=window, return_complex=True, pad_mode="reflect")
    return float(torch.linalg.norm(target - rebuilt.abs()) / torch.linalg.norm(target))


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "f_min", "f_max"),
    [
        (8000, 512, 40, 0.0, None),
        (22050, 1024, 80, 0.0, None),
        (44100, 2048, 128, 0.0, None),
        (16000, 1024, 64, 50.0, 7000.0),
    ],
)
def test_filterbank_matches_librosa(
    sr: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None
) -> None:
    ours = mel_filterbank(sr, n_fft, n_mels, f_min, f_max)
    expected = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max)
    assert ours.dtype == torch.float32 and ours.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "config",
    [MelConfig(), MelConfig(sample_rate=16000, n_fft=512, hop_length=160, n_mels=64, f_min=30.0)],
)
def test_log_mel_matches_librosa(config: MelConfig) -> None:
    y = chirp_with_noise(config.sample_rate)
    ours = MelSpectrogram(config)(torch.from_numpy(y)).numpy()
    expected = librosa_log_mel(y, config)
    assert ours.shape == expected.shape
    # float32 FFTs in two libraries: agreement to ~1e-5 in log units is typical.
    np.testing.assert_allclose(ours, expected, atol=1e-3, rtol=0)


@pytest.mark.filterwarnings("ignore:n_fft=.* is too large for input signal:UserWarning")
@pytest.mark.parametrize("n", [1, 3, 100, 441])
def test_clips_shorter_than_half_a_window_match_librosa(n: int) -> None:
    # torch's own reflect padding rejects these; a 20 ms clip at 22.05 kHz is 441 samples.
    config = MelConfig()
    y = chirp_with_noise(n)
    ours = MelSpectrogram(config)(torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(ours, librosa_log_mel(y, config), atol=1e-3, rtol=0)


@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, 1000, 22050])
def test_frame_count(n: int) -> None:
    config = MelConfig()
    out = MelSpectrogram(config)(torch.zeros(n))
    assert out.shape == (config.n_mels, 1 + n // config.hop_length)
    assert torch.all(out == math.log(config.log_floor))  # silence sits exactly on the floor


def test_batched_equals_per_item() -> None:
    module = MelSpectrogram(MelConfig())
    batch = torch.from_numpy(np.stack([chirp_with_noise(5000) * s for s in (1.0, 0.3, 0.05)]))
    batch = batch.reshape(3, 1, 5000)
    out = module(batch)
    assert out.shape == (3, 1, 80, 1 + 5000 // 256)
    for i in range(3):
        torch.testing.assert_close(out[i, 0], module(batch[i, 0]), atol=1e-5, rtol=0)


def test_buffers_follow_module_but_stay_out_of_state_dict() -> None:
    module = MelSpectrogram(MelConfig()).to(torch.float64)
    assert module.filterbank.dtype == torch.float64
    assert dict(module.state_dict()) == {}


def test_griffin_lim_converges_and_momentum_helps() -> None:
    n_fft, hop = 1024, 256
    audio = torch.from_numpy(chirp_with_noise(SR))
    target = torch.stft(
        audio, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True, pad_mode="reflect"
    ).abs()

    def sc(n_iter: int, momentum: float) -> float:
        out = griffin_lim(target, n_fft, hop, n_iter=n_iter, momentum=momentum, length=SR)
        assert out.shape == (SR,)
        return spectral_convergence(out, target, n_fft, hop)

    fast = [sc(n, 0.99) for n in (0, 4, 16, 32)]
    assert all(later < earlier for earlier, later in zip(fast, fast[1:], strict=False))
    assert fast[-1] < 0.5 * fast[0]
    assert sc(32, 0.99) < sc(32, 0.0)


def test_griffin_lim_is_deterministic_for_a_seed() -> None:
    magnitude = torch.rand(2, 257, 20, generator=torch.Generator().manual_seed(3))
    first = griffin_lim(magnitude, 512, 128, n_iter=4, seed=7)
    assert first.shape == (2, 128 * 19)
    torch.testing.assert_close(griffin_lim(magnitude, 512, 128, n_iter=4, seed=7), first)
    assert not torch.allclose(griffin_lim(magnitude, 512, 128, n_iter=4, seed=8), first)


def test_griffin_lim_in_pieces_with_its_reach_is_the_sound_in_one() -> None:
    """A long sound is rendered piece by piece (training/codes.py's decode_chunk): each
    piece with griffin_lim_reach frames more each side gives what the whole would."""
    n_fft, hop, n_iter, piece = 512, 128, 32, 100
    audio = torch.from_numpy(chirp_with_noise(2 * SR))
    magnitude = torch.stft(audio, n_fft, hop, window=torch.hann_window(n_fft),
                           return_complex=True).abs()  # fmt: skip
    frames = magnitude.shape[-1]
    whole = griffin_lim(magnitude, n_fft, hop, n_iter, length=frames * hop, seed=3)

    def in_pieces(margin: int) -> torch.Tensor:
        out = []
        for first in range(0, frames, piece):
            last = min(frames, first + piece)
            start, end = max(0, first - margin), min(frames, last + margin)
            sound = griffin_lim(magnitude[:, start:end], n_fft, hop, n_iter,
                                length=(end - start) * hop, seed=3, first_frame=start)  # fmt: skip
            out.append(sound[(first - start) * hop : (last - start) * hop])
        return torch.cat(out)

    reach = griffin_lim_reach(n_fft, hop, n_iter)
    torch.testing.assert_close(in_pieces(reach), whole, rtol=0, atol=1e-6)
    assert (in_pieces(reach // 8) - whole).abs().max() > 1e-3  # the reach is what it takes


@pytest.mark.parametrize("freq", [440.0, 1500.0])
def test_mel_to_audio_keeps_the_pitch_of_a_tone(freq: float) -> None:
    config = MelConfig()
    t = torch.arange(SR) / SR
    log_mel = MelSpectrogram(config)(0.5 * torch.sin(2 * math.pi * freq * t))
    audio = mel_to_audio(log_mel, config, length=SR).numpy()
    assert audio.shape == (SR,) and np.isfinite(audio).all()
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(SR)))
    peak = np.fft.rfftfreq(SR, 1 / SR)[spectrum.argmax()]
    assert peak == pytest.approx(freq, rel=0.05)


def test_mel_to_audio_batches_and_is_deterministic() -> None:
    config = MelConfig(n_mels=40)
    log_mel = MelSpectrogram(config)(torch.from_numpy(chirp_with_noise(4000)))
    single = mel_to_audio(log_mel, config, n_iter=4, seed=1)
    assert single.shape == (256 * (log_mel.shape[-1] - 1),)
    torch.testing.assert_close(mel_to_audio(log_mel, config, n_iter=4, seed=1), single)
    batched = mel_to_audio(log_mel.expand(2, -1, -1), config, n_iter=4, seed=1, length=4000)
    assert batched.shape == (2, 4000)
    with pytest.raises(ValueError):
        mel_to_audio(log_mel, MelConfig(n_mels=80))


def test_fingerprint_changes_with_every_field() -> None:
    base = MelConfig()
    changed = {
        "sample_rate": 24000,
        "n_fft": 2048,
        "hop_length": 128,
        "n_mels": 64,
        "f_min": 20.0,
        "f_max": 8000.0,
        "log_floor": 1e-6,
    }
    assert set(changed) == {f.name for f in dataclasses.fields(MelConfig)}
    prints = {base.fingerprint()} | {
        dataclasses.replace(base, **{k: v}).fingerprint() for k, v in changed.items()
    }
    assert len(prints) == len(changed) + 1
    assert base.fingerprint() == MelConfig().fingerprint()
    assert len(base.fingerprint()) <= 16 and int(base.fingerprint(), 16) >= 0


def test_equal_values_of_different_types_share_a_fingerprint() -> None:
    assert MelConfig(f_min=0, f_max=11025).fingerprint() == MelConfig(f_max=11025.0).fingerprint()


def test_dict_round_trip() -> None:
    config = MelConfig(sample_rate=16000, n_fft=512, hop_length=128, n_mels=64, f_max=7600.0)
    assert MelConfig.from_dict(config.to_dict()) == config
    assert MelConfig.from_dict(MelConfig().to_dict()) == MelConfig()
    with pytest.raises(ValueError, match="hop_size"):
        MelConfig.from_dict({**config.to_dict(), "hop_size": 1})


@pytest.mark.parametrize(
    "kwargs",
    [{"n_fft": 0}, {"hop_length": 2.5}, {"f_max": 30000.0}, {"f_min": 500.0, "f_max": 400.0},
     {"log_floor": 0.0}],
)  # fmt: skip
def test_invalid_configs_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MelConfig(**kwargs)
