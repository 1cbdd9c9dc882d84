"""Generated sounds measured against the real set, beside two anchors: one report.

`report_generation` takes the real set's training and held-out sounds (as training
hears them: trimmed, peak-normalised; `load_real`) and a set of generated clips, and
measures three sets the same way (audio/generation_figures.py):

- the generated clips;
- "copies": the training sounds offered as if generated: perfect fidelity, nothing new
  (a prior that learned its files by heart would score this);
- "noise": decaying noise bursts of the real sounds' durations: nothing of the set.

A figure means something between those two. `GenerationReport.kad_way` says where the
clips' KAD lies on the way from copies (0%) to noise (100%). The same report serves the
bench (bench/generation.py, 100 clips) and the end of a prior's training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.audio.dataset import load_prepared
from distill.audio.embedding import EMBEDDING_CONFIG, embed_all
from distill.audio.generation_figures import Figures, Reference, noise_bursts, onset_share

REAL_RATE = EMBEDDING_CONFIG.sample_rate  # real sounds are loaded at the embedding's rate


@dataclass(frozen=True)
class GenerationReport:
    generated: Figures
    copies: Figures
    noise: Figures
    split_floor: float  # KAD between two halves of the real set
    copy_threshold: float  # in standardised embedding units
    onset_generated: float  # share of clips that start on their sound
    onset_real: float  # the same for the real set's sounds (the copies anchor's)
    onset_noise: float

    @property
    def kad_way(self) -> float:
        """The clips' KAD as a percentage of the way from the copies anchor to noise."""
        span = self.noise.kad - self.copies.kad
        if not math.isfinite(span) or span <= 0:
            return float("nan")
        return 100.0 * (self.generated.kad - self.copies.kad) / span


def load_real(paths: Sequence[Path]) -> list[np.ndarray]:
    """The sounds as training hears them, at REAL_RATE; unreadable ones left out."""
    sounds = []
    for path in paths:
        audio, _ = load_prepared(path, REAL_RATE)
        if audio is not None:
            sounds.append(audio)
    return sounds


def report_generation(
    train: Sequence[np.ndarray],
    held_out: Sequence[np.ndarray],
    clips: Sequence[np.ndarray],
    clip_rate: int,
    silent: Sequence[bool] = (),
    seed: int = 0,
) -> GenerationReport:
    """`train`, `held_out`: real sounds at REAL_RATE; `clips` at `clip_rate`, with the
    flags of those found silent. Raises ValueError without a training sound."""
    train_points = embed_all(train, REAL_RATE)
    held_points = embed_all(held_out, REAL_RATE)
    reference = Reference(train_points, held_points, seed)
    real = [*train, *held_out]
    noise = noise_bursts([len(s) / REAL_RATE for s in real], REAL_RATE, seed)
    return GenerationReport(
        generated=reference.measure(embed_all(clips, clip_rate), silent),
        copies=reference.measure(train_points, bootstrap=False),
        noise=reference.measure(embed_all(noise, REAL_RATE), bootstrap=False),
        split_floor=reference.split_floor,
        copy_threshold=reference.copy_threshold,
        onset_generated=onset_share(clips, clip_rate),
        onset_real=onset_share(real, REAL_RATE),
        onset_noise=onset_share(noise, REAL_RATE),
    )
