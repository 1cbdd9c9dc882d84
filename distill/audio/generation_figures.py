"""How good and how new a set of generated sounds is, against the real set it came from.

Every figure works on clips embedded by audio/embedding.py and standardised on the real
set (its training and held-out files together), so it depends on no model. `Reference`
holds the real set, ready to measure any number of generated sets against it (the
clips, and the two anchors every figure is read against: the training files offered as
if generated, "copies", and `noise_bursts`, "noise").

- KAD (kernel audio distance): the unbiased estimate of the squared maximum mean
  discrepancy between the generated and the real set, with a Gaussian kernel
  k(x, y) = exp(-|x - y|^2 / (2 s^2)) whose bandwidth s is the real set's median
  pairwise distance, times KAD_SCALE. 0 is "drawn from the same distribution"; being
  unbiased it can dip below 0 by chance. (FAD is biased at these set sizes.)
- split floor: the KAD between two random halves of the real set, the mean over
  SPLIT_DRAWS halvings: what two honest samples of the same sounds differ by.
- precision ("plausible") and coverage ("varied"), after Naeem et al. 2020 ("Reliable
  fidelity and diversity metrics for generative models") with K_NEIGHBOURS neighbours:
  each real sound owns a ball reaching its k-th nearest other real sound. Precision is
  the share of generated clips inside at least one ball; coverage is the share of real
  sounds whose ball holds at least one generated clip. At these set sizes the balls are
  wide and precision is near 1 even for noise: judge by KAD and coverage.
- copy share ("new"): the share of clips that are a training sound again: a clip whose
  nearest training sound t lies within COPY_RATIO of t's gap, t's distance to its
  nearest other (distinct) training sound. Local, so it holds in a kit's sparse
  corners and a set's crowded middle alike. Measured on the 16-hit lmms kit (14 training
  sounds): its training sounds coded and decoded by a model (what a prior that learned
  them by heart plays back) lie at 0.15 to 0.72 of their gap (median 0.31), the
  held-out sounds at 0.61 or more of their nearest's, decaying noise bursts at 0.58 or
  more: 0.5 counts most replays and no real sound it never heard.
- novelty ("new"): the median distance of the clips to their nearest training sound,
  over the median distance of the held-out sounds to their nearest training sound. 1.0
  is as new as an unseen real sound; near 0 is copies; well above 1 is further from
  the training sounds than real sounds ever are (likely not plausible either).
- silent share: the share of clips the caller found silent.
- bootstrap intervals for KAD and coverage: the BOOTSTRAP_INTERVAL percentiles over
  BOOTSTRAP_RESAMPLES resamples of the clips (with replacement; a clip drawn twice is
  never paired with itself in KAD's within-set term), less the resamples' median and
  placed around the figure: a resample holds only about 63% distinct clips, so its
  coverage sits below the figure's, and its spread is what tells. Two models differ
  where their intervals do not overlap.
- onset share: the share of clips that start on their sound: the first sample within
  ONSET_DB of the clip's peak comes in its first ONSET_SECONDS. A trimmed drum hit
  does; a clip opening on silence or a slow swell does not (compare with the real
  set's own share, which the "copies" anchor shows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from distill.audio.embedding import Standardiser

KAD_SCALE = 100.0
K_NEIGHBOURS = 3
SPLIT_DRAWS = 20
COPY_RATIO = 0.5
DUPLICATE_DISTANCE = 1e-6  # training sounds this close are one sound (a file twice)
BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_INTERVAL = (5.0, 95.0)  # percentiles
ONSET_SECONDS = 0.02
ONSET_DB = -20.0
NOISE_DECAY = 5.0  # a noise burst decays by e^-NOISE_DECAY (43 dB) over its length
NOISE_PEAK = 0.9  # the peak of prepared training audio (dataset.PEAK_TARGET)


@dataclass(frozen=True)
class Figures:
    """One generated set measured against a Reference (nan where a figure has no data)."""

    clips: int
    kad: float
    kad_low: float
    kad_high: float
    precision: float
    coverage: float
    coverage_low: float
    coverage_high: float
    copy_share: float
    novelty: float
    silent_share: float


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, d), (m, d) -> (n, m) Euclidean distances."""
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def median_distance(points: np.ndarray) -> float:
    """The median over distinct pairs; 1.0 when there are none or all coincide."""
    if len(points) < 2:
        return 1.0
    upper = distances(points, points)[np.triu_indices(len(points), k=1)]
    median = float(np.median(upper))
    return median if median > 0 else 1.0


def kernel(d: np.ndarray, bandwidth: float) -> np.ndarray:
    return np.exp(-np.square(d) / (2.0 * bandwidth**2))


def _within(k: np.ndarray, ids: np.ndarray | None = None) -> float:
    """Mean kernel over pairs of different samples (an (n, n) kernel of one set)."""
    ids = np.arange(len(k)) if ids is None else ids
    different = ids[:, None] != ids[None, :]
    pairs = different.sum()
    return float((k * different).sum() / pairs) if pairs else float("nan")


def kad(generated: np.ndarray, real: np.ndarray, bandwidth: float) -> float:
    """Unbiased MMD^2 x KAD_SCALE between two embedded sets; nan under 2 points a side."""
    if len(generated) < 2 or len(real) < 2:
        return float("nan")
    k_gg = kernel(distances(generated, generated), bandwidth)
    k_rr = kernel(distances(real, real), bandwidth)
    k_gr = kernel(distances(generated, real), bandwidth)
    return KAD_SCALE * (_within(k_gg) + _within(k_rr) - 2.0 * float(k_gr.mean()))


def knn_radii(real: np.ndarray, k: int = K_NEIGHBOURS) -> np.ndarray:
    """Each real point's distance to its k-th nearest other real point (fewer when the
    set is smaller: the furthest other; 0 for a lone point)."""
    if len(real) < 2:
        return np.zeros(len(real))
    d = distances(real, real)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, min(k, len(real) - 1) - 1]


def nearest(points: np.ndarray, reference: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """Each point's distance to its nearest reference point (another one, when the two
    sets are the same and exclude_self)."""
    d = distances(points, reference)
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


def noise_bursts(seconds: Sequence[float], sample_rate: int, seed: int = 0) -> list[np.ndarray]:
    """The "noise" anchor: one white-noise burst per duration, decaying exponentially
    by NOISE_DECAY over its length, peak NOISE_PEAK: a sound of the right length and
    level with nothing of the real set in it."""
    rng = np.random.default_rng(seed)
    bursts = []
    for length in seconds:
        n = max(1, round(length * sample_rate))
        envelope = np.exp(-NOISE_DECAY * np.arange(n) / n)
        burst = rng.standard_normal(n) * envelope
        bursts.append((burst * NOISE_PEAK / np.abs(burst).max()).astype(np.float32))
    return bursts


def starts_on_sound(audio: np.ndarray, sample_rate: int) -> bool:
    """Whether the first sample within ONSET_DB of the clip's peak comes in its first
    ONSET_SECONDS; never for an empty or all-zero clip."""
    magnitude = np.abs(np.asarray(audio, dtype=np.float64))
    peak = magnitude.max(initial=0.0)
    if peak == 0.0:
        return False
    first = int(np.argmax(magnitude >= peak * 10 ** (ONSET_DB / 20)))
    return first < ONSET_SECONDS * sample_rate


def onset_share(clips: Sequence[np.ndarray], sample_rate: int) -> float:
    if not clips:
        return float("nan")
    return sum(starts_on_sound(c, sample_rate) for c in clips) / len(clips)


def _interval(figure: float, resampled: Sequence[float]) -> tuple[float, float]:
    """The resamples' spread (their BOOTSTRAP_INTERVAL percentiles less their median)
    placed around the figure."""
    low, middle, high = np.nanpercentile(
        resampled, [BOOTSTRAP_INTERVAL[0], 50.0, BOOTSTRAP_INTERVAL[1]]
    )
    return figure + float(low - middle), figure + float(high - middle)


class Reference:
    """The real set (raw embeddings of its training and held-out files), standardised
    and ready to measure generated sets against; what every measure shares is computed
    once here."""

    def __init__(self, train: np.ndarray, held_out: np.ndarray, seed: int = 0):
        train, held_out = np.atleast_2d(train), np.atleast_2d(held_out)
        if len(train) == 0:
            raise ValueError("the real set needs at least one training sound")
        raw = np.concatenate([train, held_out]) if len(held_out) else train
        self.standardise = Standardiser(raw)
        self.train = self.standardise(train)
        self.held_out = self.standardise(held_out) if len(held_out) else self.train[:0]
        self.real = self.standardise(raw)
        self.seed = seed
        self.bandwidth = median_distance(self.real)
        self.radii = knn_radii(self.real)
        k_rr = kernel(distances(self.real, self.real), self.bandwidth)
        self._within_real = _within(k_rr) if len(self.real) > 1 else float("nan")
        self.gaps = self._gaps()
        held = nearest(self.held_out, self.train) if len(self.held_out) else np.zeros(0)
        self.held_out_distance = float(np.median(held)) if len(held) else float("nan")
        self.split_floor = self._split_floor()

    def _gaps(self) -> np.ndarray:
        """Each training sound's distance to its nearest distinct other; the bandwidth
        for a sound with none (a lone file, or every file the same)."""
        d = distances(self.train, self.train)
        d[d <= DUPLICATE_DISTANCE] = np.inf  # itself, and its duplicates
        gaps = d.min(axis=1)
        return np.where(np.isfinite(gaps), gaps, self.bandwidth)

    def _split_floor(self) -> float:
        n = len(self.real)
        if n < 4:
            return float("nan")
        rng = np.random.default_rng(self.seed)
        draws = []
        for _ in range(SPLIT_DRAWS):
            order = rng.permutation(n)
            half = n // 2
            draws.append(kad(self.real[order[:half]], self.real[order[half:]], self.bandwidth))
        return float(np.mean(draws))

    def measure(
        self,
        embeddings: np.ndarray,
        silent: Sequence[bool] = (),
        bootstrap: bool = True,
    ) -> Figures:
        """The figures of one generated set ((n, EMBEDDING_SIZE) raw embeddings);
        `silent` flags the clips found silent (none when left empty)."""
        points = self.standardise(np.atleast_2d(embeddings))
        n = len(points)
        nan = float("nan")
        if n == 0:
            return Figures(0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan)
        k_gg = kernel(distances(points, points), self.bandwidth)
        k_gr_rows = kernel(distances(points, self.real), self.bandwidth).mean(axis=1)
        inside = distances(points, self.real) <= self.radii[None, :]  # (clips, real)

        def kad_of(ids: np.ndarray) -> float:
            within = _within(k_gg[np.ix_(ids, ids)], ids)
            return KAD_SCALE * (within + self._within_real - 2.0 * float(k_gr_rows[ids].mean()))

        every = np.arange(n)
        kad_low = kad_high = coverage_low = coverage_high = nan
        if bootstrap and n > 1:
            rng = np.random.default_rng(self.seed)
            kads, coverages = [], []
            for _ in range(BOOTSTRAP_RESAMPLES):
                ids = rng.integers(0, n, n)
                kads.append(kad_of(ids))
                coverages.append(float(inside[ids].any(axis=0).mean()))
            kad_low, kad_high = _interval(kad_of(every), kads)
            coverage_low, coverage_high = _interval(float(inside.any(axis=0).mean()), coverages)
        d_train = distances(points, self.train)
        to_train = d_train.min(axis=1)
        copies = to_train <= COPY_RATIO * self.gaps[d_train.argmin(axis=1)]
        novelty = (
            float(np.median(to_train)) / self.held_out_distance
            if self.held_out_distance > 0
            else nan
        )
        flags = np.asarray(silent, dtype=bool)
        return Figures(
            clips=n,
            kad=kad_of(every) if n > 1 else nan,
            kad_low=kad_low,
            kad_high=kad_high,
            precision=float(inside.any(axis=1).mean()),
            coverage=float(inside.any(axis=0).mean()),
            coverage_low=coverage_low,
            coverage_high=coverage_high,
            copy_share=float(copies.mean()),
            novelty=novelty,
            silent_share=float(flags.mean()) if flags.size else 0.0,
        )
