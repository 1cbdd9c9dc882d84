"""Regenerate: a stretch of a code grid drawn anew by the prior, window by window.

The code editor's "Regenerate" (a selection) and "Variation" (the whole sound) and
`distill codes regenerate` all come here. A range is drawn in windows of at most
`window_steps` steps, each after the codes before it (the ones the previous window drew
included), so that the editor can draw it one window per helper call: a small edit
then waits for at most one window of a long Variation, and a Variation whose page has
gone stops at the next window (server/editor_lane.py). Drawn in one call, a 3-minute
Variation held the editor's helper for minutes and could not be stopped.

A window is one slide of the prior's sampler (models/sampling.py: when its window is
full it keeps the newest context_steps // 2 steps and goes on), and no more than
WINDOW_TOKENS tokens: each window is drawn after up to context_steps // 2 steps of what
comes before it, which is what the sampler itself would have kept. A range that fits in
one window is drawn exactly as it was before windows (the same seeds, the same codes).

The same seed gives the same grid, whoever draws it (CLI or editor): window 0 draws its
candidates from seeds seed, seed + 1, ...; window w > 0 from seeds derived from (seed,
w, candidate), so that no two windows of one request draw the same random numbers.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from distill.inference.codes import CodeGrid, CodesError, decode_grid
from distill.inference.one_shot import MAX_TRIES, SILENT_DBFS, is_silent
from distill.models.library import ModelWithPrior
from distill.models.prior import CodePrior
from distill.models.rvqvae import ConvVQVAE
from distill.models.sampling import Sampling, generate_codes

CANDIDATES = 4  # stretches drawn per window, the one that leads on best is kept
HEARD_MARGIN = 4  # steps decoded each side of a drawn stretch to hear it as it will sound
WINDOW_TOKENS = 256  # at most this many tokens (steps x levels) drawn in one window


class Regenerated(NamedTuple):
    """What `regenerate` (or one window of it) made, and what it took."""

    grid: CodeGrid
    draws: int  # rounds of candidates drawn: 1, or up to MAX_TRIES while they were silent
    silent_steps: int  # steps of the range in windows silent on every round: kept, said

    @property
    def silent(self) -> bool:
        return self.silent_steps > 0


def window_steps(prior: CodePrior) -> int:
    """Steps one window draws: one slide of the sampler, WINDOW_TOKENS tokens at most."""
    config = prior.config
    return max(1, min(config.context_steps // 2, WINDOW_TOKENS // config.rvq_levels))


def regenerate_windows(loaded: ModelWithPrior, grid: CodeGrid, start: int, end: int) -> int:
    """How many windows regenerate_window cuts steps [start, end) into."""
    if not 0 <= start < end <= grid.steps:
        raise CodesError(f"a range inside the sound's {grid.steps} steps, not {start}..{end}")
    return math.ceil((end - start) / window_steps(loaded.prior))


def regenerate(
    loaded: ModelWithPrior, grid: CodeGrid, start: int, end: int, sampling: Sampling,
    seed: int = 0, candidates: int = CANDIDATES,
) -> Regenerated:  # fmt: skip
    """Steps [start, end) drawn anew, every window in turn (regenerate_window); the
    editor draws the same windows in the same order, one helper call each."""
    draws, silent_steps = 1, 0
    for window in range(regenerate_windows(loaded, grid, start, end)):
        made = regenerate_window(loaded, grid, start, end, sampling, seed, window, candidates)
        grid, draws = made.grid, max(draws, made.draws)
        silent_steps += made.silent_steps
    return Regenerated(grid, draws, silent_steps)


def regenerate_window(
    loaded: ModelWithPrior, grid: CodeGrid, start: int, end: int, sampling: Sampling,
    seed: int, window: int, candidates: int = CANDIDATES,
) -> Regenerated:  # fmt: skip
    """`grid` with window `window` of steps [start, end) drawn anew by the prior,
    conditioned on the steps before it (the windows before it already drawn in `grid`).

    `candidates` stretches are drawn; in the last window, the one kept is the one under
    which the prior finds the steps after the range most likely (the mean
    log-probability of up to a context's worth of following tokens), so the new stretch
    leads into what comes after it. In the other windows (what follows them is drawn
    next) and with nothing after the range, the first draw is kept.

    The silence rule holds per window: a window that decodes to silence is passed over,
    generation's rule (one_shot.is_silent and MAX_TRIES), so a variation never comes back
    as silence without a word. The next candidate in rank is taken; with every candidate
    silent, a new round is drawn from the same generators, MAX_TRIES rounds at most; a
    window silent on every round is kept (the first round's best) and its steps are
    counted in `silent_steps`. Per window, not on the whole, so that each window is one
    bounded piece of work (a whole-range rule would draw a long range again and again);
    and a range whose every window sounds is not silence as a whole either (its mean
    power is the mean of theirs).
    """
    windows = regenerate_windows(loaded, grid, start, end)
    if not 0 <= window < windows:
        raise CodesError(f"the range has {windows} windows, not window {window}")
    prior = loaded.prior
    size, half = window_steps(prior), prior.config.context_steps // 2
    first, last = start + window * size, min(end, start + (window + 1) * size)
    keep_before = max(0, first - half)
    prefix = torch.from_numpy(grid.codes.T[keep_before:first].copy()).unsqueeze(0)
    generators = [
        torch.Generator().manual_seed(_window_seed(seed, window, i)) for i in range(candidates)
    ]
    after = grid.codes.T[end : end + half] if last == end else grid.codes.T[:0]
    kept: CodeGrid | None = None
    for draws in range(1, MAX_TRIES + 1):
        drawn = generate_codes(
            prior,
            last - keep_before,
            generators,
            sampling,
            prefix=prefix.expand(candidates, -1, -1),
        )[:, first - keep_before :]  # (candidates, last - first, levels)
        order = list(range(candidates))  # nothing after the window: in the order drawn
        if len(after):
            scores = [_lead_in_score(loaded, grid, first, d, after) for d in drawn]
            order = [int(i) for i in np.argsort(scores)[::-1]]
        for index in order:
            codes = grid.codes.copy()
            codes[:, first:last] = drawn[index].numpy().T
            candidate = grid.with_codes(codes)
            kept = candidate if kept is None else kept
            if not stretch_is_silent(loaded.vqvae, candidate, first, last):
                return Regenerated(candidate, draws, 0)
    assert kept is not None
    return Regenerated(kept, MAX_TRIES, last - first)


def _window_seed(seed: int, window: int, candidate: int) -> int:
    """The seed of a window's candidate: window 0's are those of a draw in one piece."""
    if window == 0:
        return seed + candidate
    return int(np.random.SeedSequence([seed, window, candidate]).generate_state(1, np.uint64)[0])


def silent_stretch_message(draws: int, silent_steps: int, steps: int) -> str:
    """What the CLI and the editor say of a range (`steps` long) of which `silent_steps`
    were silence on every draw."""
    what = (
        "the drawn stretch is"
        if silent_steps >= steps
        else f"{silent_steps} of the {steps} drawn steps are"
    )  # fmt: skip
    return (
        f"{what} silence (under {SILENT_DBFS:g} dBFS) on all {draws} rounds of"
        f" {CANDIDATES} draws: kept as drawn; try another seed or a higher temperature"
    )


def stretch_is_silent(vqvae: ConvVQVAE, grid: CodeGrid, start: int, end: int) -> bool:
    """Steps [start, end) as they sound in the grid (decoded with HEARD_MARGIN steps of
    what surrounds them) are silence by generation's rule (one_shot.is_silent)."""
    first, last = max(0, start - HEARD_MARGIN), min(grid.steps, end + HEARD_MARGIN)
    audio = decode_grid(vqvae, grid.with_codes(grid.codes[:, first:last]))
    step = grid.samples_per_step
    return is_silent(audio[(start - first) * step : (end - first) * step])


@torch.no_grad()
def _lead_in_score(
    loaded: ModelWithPrior, grid: CodeGrid, start: int, stretch: torch.Tensor, after: np.ndarray
) -> float:
    """Mean log-probability the prior gives the steps `after` once `stretch` is in place,
    within one context window (as much of what comes before as fits)."""
    prior = loaded.prior
    room = max(0, prior.config.context_steps - len(after) - len(stretch))
    before = torch.from_numpy(grid.codes.T[max(0, start - room) : start].copy())
    sequence = torch.cat([before, stretch, torch.from_numpy(after.copy())])
    sequence = sequence[-prior.config.context_steps :]
    prior.eval()
    losses = prior.loss(sequence.unsqueeze(0))[0]  # per token, time-major
    return -float(losses[-len(after) * prior.config.rvq_levels :].mean())
