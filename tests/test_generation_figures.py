"""The generation figures (audio/generation_figures.py, audio/embedding.py) on sets whose
answers are known: the real set against itself, against far points, copies, noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distill.audio.embedding import EMBEDDING_SIZE, Standardiser, embed, embed_all
from distill.audio.generation_figures import (
    ONSET_SECONDS,
    Reference,
    kad,
    knn_radii,
    median_distance,
    noise_bursts,
    onset_share,
    starts_on_sound,
)

RATE = 22050


def _cloud(n: int, seed: int, centre: float = 0.0, dims: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dims)) + centre


def _reference(n_train: int = 60, n_held: int = 20) -> tuple[Reference, np.ndarray, np.ndarray]:
    train, held = _cloud(n_train, 1), _cloud(n_held, 2)
    return Reference(train, held), train, held


def test_kad_is_near_zero_for_one_distribution_and_large_for_far_sets() -> None:
    real, same = _cloud(200, 1), _cloud(200, 2)
    bandwidth = median_distance(real)
    assert abs(kad(same, real, bandwidth)) < 1.0
    assert kad(_cloud(200, 3, centre=5.0), real, bandwidth) > 50.0
    # nearer sets lie in between, in order
    near, mid = kad(_cloud(200, 4, 0.5), real, bandwidth), kad(_cloud(200, 5, 1.5), real, bandwidth)
    assert 1.0 < near < mid < kad(_cloud(200, 3, 5.0), real, bandwidth)


def test_kad_is_unbiased_for_identical_sets_and_needs_two_points() -> None:
    real = _cloud(50, 1)
    # the cross term counts each point with itself: the unbiased estimate dips below 0
    assert kad(real, real, median_distance(real)) < 0.0
    assert math.isnan(kad(real[:1], real, 1.0))


def test_knn_radii_are_the_kth_nearest_other_point() -> None:
    points = np.array([[0.0], [1.0], [3.0], [6.0]])
    assert knn_radii(points, k=1).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert knn_radii(points, k=3).tolist() == [6.0, 5.0, 3.0, 6.0]
    assert knn_radii(points[:2], k=3).tolist() == [1.0, 1.0]  # fewer points than k


def test_copies_anchor_is_all_copies_covered_and_not_new() -> None:
    reference, train, _ = _reference()
    copies = reference.measure(train)
    assert copies.copy_share == 1.0
    assert copies.novelty == 0.0
    assert copies.precision == 1.0
    # every training sound covers itself; held-out ones only when a training one is near
    assert copies.coverage >= len(train) / (len(train) + 20)
    assert copies.kad < reference.split_floor + 5.0


def test_real_sounds_unseen_are_new_and_far_sets_are_neither_plausible_nor_varied() -> None:
    reference, _, _ = _reference()
    unseen = reference.measure(_cloud(80, 7))
    assert unseen.novelty == pytest.approx(1.0, abs=0.35)
    assert unseen.copy_share < 0.2
    assert unseen.coverage > 0.7
    far = reference.measure(_cloud(80, 8, centre=6.0))
    assert far.precision == 0.0 and far.coverage == 0.0 and far.copy_share == 0.0
    assert far.novelty > 3.0
    assert far.kad > unseen.kad_high


def test_one_point_repeated_is_plausible_but_not_varied() -> None:
    reference, train, _ = _reference()
    mush = reference.measure(np.repeat(train[:1] + 0.01, 50, axis=0))
    assert mush.precision == 1.0
    assert mush.coverage < 0.15
    assert mush.kad > reference.measure(_cloud(50, 9)).kad_high


def test_bootstrap_interval_holds_the_figure_and_narrows_with_more_clips() -> None:
    reference, _, _ = _reference()
    small, large = reference.measure(_cloud(20, 11, 0.7)), reference.measure(_cloud(200, 12, 0.7))
    for figures in (small, large):
        assert figures.kad_low <= figures.kad <= figures.kad_high
        assert figures.coverage_low <= figures.coverage <= figures.coverage_high
    assert large.kad_high - large.kad_low < small.kad_high - small.kad_low
    assert reference.measure(_cloud(20, 11, 0.7)) == small  # same seed, same figures


def test_silent_share_and_empty_sets() -> None:
    reference, _, _ = _reference()
    assert reference.measure(_cloud(4, 3), silent=[True, False, False, False]).silent_share == 0.25
    empty = reference.measure(np.zeros((0, 8)))
    assert empty.clips == 0 and math.isnan(empty.kad)


def test_a_lone_training_file_measures_without_failing() -> None:
    point = _cloud(1, 1)
    reference = Reference(point, point)  # split_files of one file: both sides
    figures = reference.measure(_cloud(10, 2))
    assert figures.clips == 10 and figures.copy_share == 0.0
    assert math.isnan(reference.split_floor)


def test_embedding_tells_level_length_and_spectrum_apart() -> None:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(RATE // 2).astype(np.float32) * 0.5
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE // 2) / RATE)).astype(np.float32)
    points = embed_all([noise, noise * 0.01, noise[: RATE // 10], tone], RATE)
    assert points.shape == (4, EMBEDDING_SIZE)
    assert points[0, -1] == pytest.approx(math.log(0.5))  # log seconds
    assert points[2, -1] == pytest.approx(math.log(0.1))
    assert points[1, :64].mean() < points[0, :64].mean() - 3  # quieter: lower band means
    low, high = points[3, :64][:20].max(), points[3, :64][40:].max()  # a tone: low bands only
    assert low > high + 3
    assert embed(np.zeros(0, dtype=np.float32), RATE).shape == (EMBEDDING_SIZE,)
    # the embedding is model-independent: another sample rate is resampled to the same
    resampled = embed(noise[::2].copy(), RATE // 2)
    assert resampled[-1] == pytest.approx(points[0, -1], abs=1e-3)


def test_standardiser_floors_flat_dimensions() -> None:
    real = np.array([[0.0, 1.0], [2.0, 1.0]])
    standardise = Standardiser(real)
    assert standardise(real)[:, 0].tolist() == [-1.0, 1.0]
    assert standardise(np.array([[1.0, 1.5]]))[0, 1] == pytest.approx(10.0)  # 0.5 / 0.05


def test_noise_bursts_decay_and_onsets() -> None:
    bursts = noise_bursts([0.5, 0.1], RATE, seed=3)
    assert [len(b) for b in bursts] == [RATE // 2, RATE // 10]
    assert np.abs(bursts[0]).max() == pytest.approx(0.9)
    head, tail = np.abs(bursts[0][:1000]).mean(), np.abs(bursts[0][-1000:]).mean()
    assert tail < head / 50
    assert starts_on_sound(bursts[0], RATE)
    late = np.concatenate([np.zeros(int(0.04 * RATE), np.float32), bursts[0]])  # 40 ms silence
    assert not starts_on_sound(late, RATE)
    just_in = np.concatenate([np.zeros(int(0.5 * ONSET_SECONDS * RATE), np.float32), bursts[0]])
    assert starts_on_sound(just_in, RATE)
    assert not starts_on_sound(np.zeros(100, np.float32), RATE)
    assert onset_share([bursts[0], late], RATE) == 0.5


def test_a_copy_lies_within_half_its_nearest_training_sounds_gap() -> None:
    # training sounds on a line: 0 and 10 (gap 10), 30 (gap 20); a file twice
    train = np.array([[0.0, 0.0], [10.0, 0.0], [30.0, 0.0], [30.0, 0.0]])
    reference = Reference(train, np.array([[50.0, 0.0]]))
    scale = reference.standardise.std[0]  # distances are measured standardised

    def share(x: float) -> float:
        return reference.measure(np.array([[x, 0.0], [x, 0.0]]), bootstrap=False).copy_share

    assert share(30.0) == 1.0  # a duplicated file is still copied: its gap is to 10, not 0
    assert reference.gaps.tolist() == pytest.approx(
        [10 / scale, 10 / scale, 20 / scale, 20 / scale]
    )
    assert share(-4.0) == 1.0 and share(-6.0) == 0.0  # half of 10 around the sound at 0
    assert share(21.0) == 1.0  # the sound at 30 is lonelier: 9 from it is still a copy
    assert share(19.0) == 0.0  # 9 from its nearest, the sound at 10, whose gap is 10
