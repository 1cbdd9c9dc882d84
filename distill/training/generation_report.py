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
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from distill.audio.dataset import load_prepared
from distill.audio.decode import decode_audio
from distill.audio.embedding import EMBEDDING_CONFIG, embed_all
from distill.audio.generation_figures import Figures, Reference, noise_bursts, onset_share
from distill.events import GenerationMeasured
from distill.inference.generate import GenerateSpec, generate_clips
from distill.inference.spec import GENERATE_SECONDS

REAL_RATE = EMBEDDING_CONFIG.sample_rate  # real sounds are loaded at the embedding's rate
LENGTH_MARGIN = 1.25  # measured clips run at most this times the longest real sound
COPY_SHARE_BOUND = 0.5  # a copy share at or over this warns (training/memorization.py)


@dataclass(frozen=True)
class GenerationReport:
    generated: Figures
    copies: Figures
    noise: Figures
    split_floor: float  # KAD between two halves of the real set
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
        onset_generated=onset_share(clips, clip_rate),
        onset_real=onset_share(real, REAL_RATE),
        onset_noise=onset_share(noise, REAL_RATE),
    )


class GeneratedSet(NamedTuple):
    clips: list[np.ndarray]
    sample_rate: int
    silent: list[bool]
    paths: list[Path]  # where generate_clips wrote them (gone once the folder is)


def clip_seconds(real: Sequence[np.ndarray]) -> float:
    """How long the measured clips may run: what a user gets by default
    (GENERATE_SECONDS), or LENGTH_MARGIN times the longest real sound when that is
    shorter. A one-shot clip ends where the prior ends its sound long before either; one
    that runs on is still longer than every real sound, and costs less to sample."""
    longest = max((len(s) / REAL_RATE for s in real), default=GENERATE_SECONDS)
    return min(GENERATE_SECONDS, LENGTH_MARGIN * longest)


def generate_set(
    model_path: Path,
    folder: Path,
    clips: int,
    seed: int,
    seconds: float = GENERATE_SECONDS,
    **options: Any,
) -> GeneratedSet:
    """`clips` clips of seeds seed, seed + 1, ... through the product's own path
    (generate_clips: the prior's default mode, one-shot trimming included), read back
    from the WAVs it wrote to `folder`. `options`: other GenerateSpec fields (variation,
    temperature, top_p), for the benchmark."""
    spec = GenerateSpec(model_path, folder, seconds=seconds, count=clips, seed=seed, **options)
    result = generate_clips(spec)
    paths = [Path(c.path) for c in result.clips]
    decoded = [decode_audio(p) for p in paths]
    rates = {rate for _, rate in decoded}
    if len(rates) > 1:
        raise ValueError(f"generated clips came at several sample rates: {sorted(rates)}")
    rate = rates.pop() if rates else REAL_RATE
    return GeneratedSet([a for a, _ in decoded], rate, [c.silent for c in result.clips], paths)


def measure_prior(
    model_path: Path,
    train_files: Sequence[Path],
    held_out_files: Sequence[Path],
    epoch: int,
    clips: int,
    seed: int,
) -> GenerationMeasured:
    """A model file's prior measured as the user will hear it: `clips` generated clips
    against the dataset's training and held-out files, both anchors beside them."""
    started = time.perf_counter()
    train, held_out = load_real(train_files), load_real(held_out_files)
    seconds = clip_seconds([*train, *held_out])
    with tempfile.TemporaryDirectory(prefix="distill-measure-") as folder:
        generated = generate_set(model_path, Path(folder), clips, seed, seconds)
    report = report_generation(
        train, held_out, generated.clips, generated.sample_rate, generated.silent, seed
    )
    return measured_payload(report, epoch, time.perf_counter() - started)


def measured_payload(report: GenerationReport, epoch: int, seconds: float) -> GenerationMeasured:
    g = report.generated
    return GenerationMeasured(
        epoch=epoch,
        sampled_clips=g.clips,
        kad=_known(g.kad),
        kad_low=_known(g.kad_low),
        kad_high=_known(g.kad_high),
        kad_copies=_known(report.copies.kad),
        kad_noise=_known(report.noise.kad),
        split_floor=_known(report.split_floor),
        precision=g.precision,
        coverage=g.coverage,
        coverage_low=_known(g.coverage_low),
        coverage_high=_known(g.coverage_high),
        coverage_copies=report.copies.coverage,
        coverage_noise=report.noise.coverage,
        copy_share=g.copy_share,
        novelty=_known(g.novelty),
        silent_share=g.silent_share,
        onset_share=report.onset_generated,
        onset_real=report.onset_real,
        copy_share_bound=COPY_SHARE_BOUND,
        seconds=seconds,
    )


def _known(value: float) -> float | None:
    """NaN (no data) travels as None: JSON and the pages have no NaN."""
    return float(value) if math.isfinite(value) else None
