"""The figures bench/quality.py and the decoder stage's held-out check report."""

from __future__ import annotations

import pytest
import torch

from distill.audio.metrics import log_stft_distance, magnitude_convergence, spectral_convergence


def _noise(seconds: float = 0.5, rate: int = 16000) -> torch.Tensor:
    return torch.randn(int(seconds * rate), generator=torch.Generator().manual_seed(1))


def test_magnitude_convergence_is_zero_when_exact_and_one_for_silence() -> None:
    magnitude = torch.rand(513, 40, generator=torch.Generator().manual_seed(0)) + 0.1
    assert magnitude_convergence(magnitude, magnitude) == 0.0
    assert magnitude_convergence(magnitude, torch.zeros_like(magnitude)) == pytest.approx(1.0)
    assert magnitude_convergence(magnitude, 1.5 * magnitude) == pytest.approx(0.5, rel=1e-5)


def test_spectral_convergence_measures_level_and_ignores_extra_length() -> None:
    audio = _noise()
    assert spectral_convergence(audio, audio) == 0.0
    assert spectral_convergence(audio, 0.5 * audio) == pytest.approx(0.5, rel=1e-5)
    longer = torch.cat([audio, _noise(0.2)])  # compared over the common length only
    assert spectral_convergence(audio, longer) == 0.0


def test_log_stft_distance_grows_with_the_error() -> None:
    audio = _noise()
    assert log_stft_distance(audio, audio) == 0.0
    small, large = log_stft_distance(audio, 0.9 * audio), log_stft_distance(audio, 0.5 * audio)
    assert 0.0 < small < large
