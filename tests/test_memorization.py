"""The memorization checks: a 5-file set trained far too long is flagged, and says what
to do; a run on 100+ varied files is not. Real (tiny) VQ-VAE and prior, real audio."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import soundfile as sf
from helpers import tiny_prior_spec, tiny_spec

from distill.audio.synth import chirp, click, noise_burst, tone
from distill.events import (
    CAUSE_COPY_RATE,
    CAUSE_GAP,
    CopiesMeasured,
    GenerationMeasured,
    MemorizationWarning,
    PriorEpochMetrics,
)
from distill.models.library import read_metadata
from distill.training.memorization import copy_share_warning, gap_warning
from distill.training.prior import train_prior
from distill.training.vqvae import train_vqvae


def varied_sounds(folder: Path, count: int, seed: int) -> None:
    """`count` different one-shots: tones, chirps, noise and clicks of random pitch and length."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        kind = i % 4
        if kind == 0:
            audio = tone(110 * 2 ** (rng.integers(0, 36) / 12), rng.uniform(0.2, 0.6), 8000)
        elif kind == 1:
            audio = chirp(
                rng.uniform(100, 800), rng.uniform(1000, 3500), rng.uniform(0.2, 0.6), 8000
            )
        elif kind == 2:
            audio = noise_burst(rng.uniform(0.1, 0.5), 8000, rng)
        else:
            audio = click(8000, rng.uniform(0.03, 0.1))
        sf.write(folder / f"{i:03d}.wav", audio, 8000)


def run(tmp_path: Path, files: int, epochs: int, codebook_size: int = 8, **prior) -> list:
    varied_sounds(tmp_path / "set", files, seed=files)
    vq = tiny_spec(tmp_path / "set", tmp_path, epochs=1, codebook_size=codebook_size)
    train_vqvae(vq, lambda event: None)
    spec = tiny_prior_spec(vq.model_path, tmp_path / "set", tmp_path, epochs=epochs, **prior)
    # trained past its best on its own files alone: no takes, no early stop
    settings = dataclasses.replace(spec.settings, augment=False, patience=0)
    spec = dataclasses.replace(spec, settings=settings)
    events: list = []
    train_prior(spec, events.append)
    return events


def test_five_files_trained_for_many_epochs_are_flagged_with_what_to_do(tmp_path: Path) -> None:
    events = run(tmp_path, files=5, epochs=60, dropout=0.0, hidden_size=64)
    warnings = [e for e in events if isinstance(e, MemorizationWarning)]
    causes = {w.cause for w in warnings}
    assert causes & {CAUSE_GAP, CAUSE_COPY_RATE}, [
        (m.epoch, m.train_perplexity, m.val_perplexity)
        for m in events if isinstance(m, PriorEpochMetrics)
    ]  # fmt: skip
    for warning in warnings:
        assert "fewer --epochs" in warning.message and "more varied sounds" in warning.message
    gaps = [w for w in warnings if w.cause == CAUSE_GAP]
    assert len(gaps) <= 1 or len({w.epoch for w in gaps}) == len(gaps)  # once per start
    card = read_metadata(tmp_path / "models" / "tiny.distill")["prior"]["training"]
    assert card["memorization_warnings"] == [w.to_dict() for w in warnings]
    measured = [e for e in events if isinstance(e, GenerationMeasured)]
    assert len(measured) == 1 and card["generation"] == measured[0].to_dict()
    assert not [e for e in events if isinstance(e, CopiesMeasured)]  # one report, not two


def test_a_hundred_varied_files_are_not_flagged(tmp_path: Path) -> None:
    # 64 codes, the seeds' size for this many files: with the tiny 8, no prior could
    # stay above the seeds' line of 5 on any data
    events = run(tmp_path, files=104, epochs=2, codebook_size=64)
    assert not [e for e in events if isinstance(e, MemorizationWarning)]
    measured = [e for e in events if isinstance(e, GenerationMeasured)][0]
    assert measured.copy_share < measured.copy_share_bound and measured.sampled_clips > 0


def epoch(n: int, train: float, val: float, best: int) -> dict:
    return {"epoch": n, "train_loss": np.log(train), "val_perplexity": val, "best_epoch": best}


def test_the_gap_warns_once_when_val_rises_while_train_falls() -> None:
    # the drum kit: 43 at epoch 2, then up while training perplexity falls to 1.2
    history = [epoch(0, 60, 50, 0), epoch(1, 30, 43, 1), epoch(2, 10, 80, 1)]
    assert gap_warning(history[:2]) is None  # val still falling
    first = gap_warning(history)
    assert first is not None and first.cause == CAUSE_GAP and first.epoch == 2
    assert "risen from 43.0 at epoch 2" in first.message
    history.append(epoch(3, 1.2, 1176, 1))
    assert gap_warning(history) is None  # already said
    # a gap alone (held-out sounds harder) is not memorization
    assert gap_warning([epoch(0, 3, 20, 0), epoch(1, 2.5, 19, 1)]) is None


def test_the_card_keeps_no_warnings_list_of_other_runs(tmp_path: Path) -> None:
    events = run(tmp_path, files=8, epochs=1)
    card = read_metadata(tmp_path / "models" / "tiny.distill")["prior"]
    assert card["training"]["memorization_warnings"] == [
        e.to_dict() for e in events if isinstance(e, MemorizationWarning)
    ]
    assert isinstance(card["dataset"]["one_shot"], bool) and card["dataset"]["one_shot"]
    assert dataclasses.is_dataclass(events[0])


def test_a_copy_share_at_the_bound_warns_and_one_under_it_does_not() -> None:
    figures = dict(
        epoch=3, sampled_clips=40, kad=1.0, kad_low=0.5, kad_high=2.0, kad_copies=0.0, kad_noise=20.0,
        split_floor=-0.5, precision=1.0, coverage=0.9, coverage_low=0.8, coverage_high=1.0,
        coverage_copies=1.0, coverage_noise=0.1, copy_share=0.5, novelty=0.2,
        silent_share=0.0, onset_share=1.0, onset_real=1.0, copy_share_bound=0.5, seconds=1.0,
    )  # fmt: skip
    warning = copy_share_warning(GenerationMeasured(**figures), 40.0, 2.0)
    assert warning is not None and warning.cause == CAUSE_COPY_RATE and warning.measured == 0.5
    assert warning.epoch == 3 and "20 of 40 clips" in warning.message
    assert "fewer --epochs" in warning.message
    under = GenerationMeasured(**{**figures, "copy_share": 0.475})
    assert copy_share_warning(under, 40.0, 2.0) is None
