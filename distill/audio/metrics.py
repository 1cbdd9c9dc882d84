"""How close a rendering is to the original: figures a listener's complaints map onto.

- spectral_convergence: ||S - S'||_F / ||S||_F over linear STFT magnitudes; 0 is exact.
  Sensitive to every bin's level, so noisy sounds (hats, snares) score badly even when
  they sound right.
- log_stft_distance: mean |log S - log S'| over three STFT resolutions (multi-resolution
  log-STFT distance); kinder to noise, stricter about onsets and decays.
- audible_mel_error: mean |log-mel error| over a sound's own frames, never its padding.
"""

from __future__ import annotations

import torch
from torch import Tensor

STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft, hop)
LOG_EPSILON = 1e-5


def _magnitude(audio: Tensor, n_fft: int, hop: int) -> Tensor:
    window = torch.hann_window(n_fft, dtype=audio.dtype)
    return torch.stft(
        audio, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True
    ).abs()


def _same_length(original: Tensor, rendered: Tensor) -> tuple[Tensor, Tensor]:
    length = min(len(original), len(rendered))
    return original[:length].float(), rendered[:length].float()


def spectral_convergence(
    original: Tensor, rendered: Tensor, n_fft: int = 1024, hop: int = 256
) -> float:
    """(samples,) each; compared over their common length."""
    original, rendered = _same_length(original, rendered)
    return magnitude_convergence(_magnitude(original, n_fft, hop), _magnitude(rendered, n_fft, hop))


def magnitude_convergence(target: Tensor, estimate: Tensor) -> float:
    """Spectral convergence of two linear magnitudes of the same shape, before any phase
    is guessed: what a predicted magnitude is worth on its own."""
    return float(torch.linalg.norm(target - estimate) / torch.linalg.norm(target).clamp(min=1e-8))


def log_stft_distance(original: Tensor, rendered: Tensor) -> float:
    """Mean over STFT_RESOLUTIONS of mean |log(|S| + eps) - log(|S'| + eps)|."""
    original, rendered = _same_length(original, rendered)
    total = 0.0
    for n_fft, hop in STFT_RESOLUTIONS:
        target = _magnitude(original, n_fft, hop)
        estimate = _magnitude(rendered, n_fft, hop)
        total += float(
            (torch.log(target + LOG_EPSILON) - torch.log(estimate + LOG_EPSILON)).abs().mean()
        )
    return total / len(STFT_RESOLUTIONS)


def audible_mel_error(target: Tensor, estimate: Tensor, frames: int) -> float:
    """(m, t) log-mels; the mean absolute error over the first `frames` frames. The
    reference first, as every figure here takes it."""
    return float((target[:, :frames] - estimate[:, :frames]).abs().mean())
