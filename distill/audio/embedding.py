"""A sound as a point, for measuring generated sets: `embed(audio, sample_rate)`.

Judging what a model generates needs a space that does not depend on the model (its own
codes or latents would flatter it) and needs nothing downloaded. So a clip is summed up
by statistics of a fixed 64-band log-mel (22,050 Hz, 1024-point FFT, hop 256, whatever
the model's own front-end): each band's mean and standard deviation over time (its
spectrum, and how much it moves), the mean absolute frame-to-frame change over all bands
(how fast it moves: a smeared clip has less of it than a crisp hit), and the log of its
duration. EMBEDDING_SIZE = 2 * 64 + 2 numbers.

The figures compare points by Euclidean distance, so every dimension is first put on the
same footing: `Standardiser` subtracts the real set's mean and divides by its standard
deviation per dimension. A dimension that hardly varies across the real set (a top band
always at the floor) would turn a tiny difference into a huge one; its spread is floored
at STD_FLOOR (in the log-mel's own units, nats), so the figures stay about audible
differences.

The clip is measured as given, level included: the real files are peak-normalised as
training hears them (dataset.load_prepared), and a generated clip much quieter than them
is a real difference a listener hears.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

from distill.audio.decode import resample
from distill.audio.mel import MelSpectrogram
from distill.audio.mel_config import MelConfig

EMBEDDING_CONFIG = MelConfig(sample_rate=22050, n_fft=1024, hop_length=256, n_mels=64)
EMBEDDING_SIZE = 2 * EMBEDDING_CONFIG.n_mels + 2
MIN_SECONDS = 0.01  # log duration of an empty clip: as if this long
STD_FLOOR = 0.05  # a dimension's spread over the real set, at least this


@functools.lru_cache(maxsize=1)
def _front() -> MelSpectrogram:
    return MelSpectrogram(EMBEDDING_CONFIG)


def embed(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """(samples,) mono float audio -> (EMBEDDING_SIZE,) float64: band means, band
    standard deviations, mean |frame-to-frame change|, log seconds."""
    audio = np.asarray(audio, dtype=np.float32)
    seconds = len(audio) / sample_rate
    if len(audio) and sample_rate != EMBEDDING_CONFIG.sample_rate:
        audio = resample(audio, sample_rate, EMBEDDING_CONFIG.sample_rate)
    if len(audio) == 0:  # an empty clip reads as one frame of silence
        audio = np.zeros(EMBEDDING_CONFIG.hop_length, dtype=np.float32)
    with torch.no_grad():
        mel = _front()(torch.from_numpy(audio)).double().numpy()  # (64, frames)
    change = float(np.abs(np.diff(mel, axis=1)).mean()) if mel.shape[1] > 1 else 0.0
    return np.concatenate(
        [mel.mean(axis=1), mel.std(axis=1), [change, math.log(max(seconds, MIN_SECONDS))]]
    )


def embed_all(clips: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
    """A list of clips -> (len(clips), EMBEDDING_SIZE)."""
    if not clips:
        return np.zeros((0, EMBEDDING_SIZE))
    return np.stack([embed(clip, sample_rate) for clip in clips])


class Standardiser:
    """Per-dimension standardisation fitted on the real set's embeddings."""

    def __init__(self, real: np.ndarray):
        real = np.asarray(real, dtype=np.float64)
        if real.ndim != 2 or len(real) == 0:
            raise ValueError(f"need (n, dims) real embeddings with n >= 1, got {real.shape}")
        self.mean = real.mean(axis=0)
        self.std = np.maximum(real.std(axis=0), STD_FLOOR)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - self.mean) / self.std
