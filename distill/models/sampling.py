"""Sampling codes from a CodePrior: temperature, top-k, top-p, a seed, a sliding window.

Read it like gpt-fast's generate.py: `sample_next` turns one slot's logits into codes,
`generate_codes` runs the loop. With the cache (the default) a window is prefilled once
and then fed one token per step; `cached=False` recomputes the whole window every step.
Both follow the same window plan and draw the same random numbers, so they produce the
same codes (the benchmark and the tests hold them to it).

Longer than one window: when a window is full, the newest `context_steps // 2` steps
are kept as the start of a new window (BOS first, as in training, where windows are
crops that start anywhere in a file) and generation goes on from there.

Reproducibility: each clip draws from its own torch.Generator, one uniform number per
token, and its logits do not depend on the other clips of its batch, so clip i of a batch
depends on its seed alone, to the last bit, not on which clips share its batch or how
many there are. That needs care: a matrix product's last bits depend on its shape. MKL
multiplies 1 row with one kernel, 2 or 3 rows with another and 4 or more with a third,
and each rounds differently; within that third one, on one thread, a row's result is the
same whatever the other rows hold and wherever it sits (on two threads the rows are split
between them, and a row's bits depend on the split). So generate_codes runs torch on one
thread (threads.one_torch_thread, which is also the faster choice for generating on a
busy machine: bench/prior_bench.py), and every batch runs at least MIN_BATCH_ROWS
rows: a clip drawn alone is padded with rows that are drawn and thrown away, and its
logits are then bit for bit those it gets in a batch of 8 (the tests hold every size to
it). Before, each clip ran the blocks by itself with the shapes of a batch of one: exact
too, but a batch of 8 was then barely faster (1.15x) than 8 clips one after the other,
where a shared product draws them about 6 times faster (bench/prior_bench.py). (Whether the cache is used changes the
last bits of the logits, so cached and recomputed codes agree but for a rare draw that
falls within rounding of a code's boundary.)

Batches: at most CLIPS_PER_BATCH clips are drawn at once, so memory (the key-value cache,
b x layers x 2 x window x hidden) does not grow with the number of clips asked for.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distill.models.prior import CodePrior
from distill.models.sampling_options import Sampling
from distill.threads import one_torch_thread

CLIPS_PER_BATCH = 8  # clips drawn in one pass: bounds memory; more gains little speed on 2 cores
MIN_BATCH_ROWS = 4  # fewest rows a batch runs: from 4 on, a row's logits do not depend on the rest


def sample_next(logits: Tensor, sampling: Sampling, uniforms: Tensor) -> Tensor:
    """(b, k) logits and (b,) uniforms in [0, 1) -> (b,) codes, by inverse CDF."""
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / sampling.temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]  # (b, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the likelier codes
        sorted_probs = sorted_probs.masked_fill(before >= sampling.top_p, 0.0)  # keeps the top one
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    cdf = probs.cumsum(dim=-1)  # (b, k)
    targets = uniforms.to(cdf.dtype).unsqueeze(1) * cdf[:, -1:]
    codes = torch.searchsorted(cdf, targets, right=True).squeeze(1)
    return codes.clamp(max=logits.shape[-1] - 1)


def generate_codes(
    prior: CodePrior,
    steps: int,
    generators: list[torch.Generator],
    sampling: Sampling = Sampling(),
    cached: bool = True,
    prefix: Tensor | None = None,
    forced: Tensor | None = None,
) -> Tensor:
    """(b, steps, q) codes for b = len(generators) clips, `steps` time steps each.

    With a `prefix` (b, p, q), the first p steps are those codes, and the rest is drawn
    after them (the code editor's regenerate). With `forced` (b, steps, q), every code
    that is not -1 there is taken as it is and the others are drawn around it (a
    variation keeps a sound's first level and draws the finer ones anew); the random
    numbers are drawn either way, so a clip's draws still depend on its seed alone.

    Any number of clips: they are drawn CLIPS_PER_BATCH at a time, on one thread."""
    with one_torch_thread():
        parts = [
            _generate_batch(
                prior,
                steps,
                generators[first : first + CLIPS_PER_BATCH],
                sampling,
                cached,
                None if prefix is None else prefix[first : first + CLIPS_PER_BATCH],
                None if forced is None else forced[first : first + CLIPS_PER_BATCH],
            )  # fmt: skip
            for first in range(0, len(generators), CLIPS_PER_BATCH)
        ]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


@torch.no_grad()
def _generate_batch(
    prior: CodePrior,
    steps: int,
    generators: list[torch.Generator],
    sampling: Sampling,
    cached: bool,
    prefix: Tensor | None,
    forced: Tensor | None,
) -> Tensor:
    """generate_codes for one batch of at most CLIPS_PER_BATCH clips, run as at least
    MIN_BATCH_ROWS rows (the rows past the clips are drawn and dropped)."""
    config = prior.config
    q, k, window = config.rvq_levels, config.codebook_size, config.sequence_length
    keep = (config.context_steps // 2) * q  # tokens carried into the next window
    clips = len(generators)
    batch = max(clips, MIN_BATCH_ROWS)
    device = prior.head.weight.device
    prior.eval()
    codes = torch.zeros(batch, steps * q, dtype=torch.long, device=device)
    offsets = (torch.arange(steps * q, device=device) % q) * k  # token = code + level * k
    bos = torch.full((batch, 1), prior.bos, dtype=torch.long, device=device)
    first = 0 if prefix is None else prefix.shape[1] * q
    if prefix is not None:
        codes[:clips, :first] = prefix.reshape(clips, -1).to(device)
    # every clip's uniforms at once: torch.rand(n) draws what n calls of torch.rand(()) would
    uniforms = torch.zeros(batch, steps * q - first)
    for row, generator in enumerate(generators):
        uniforms[row] = torch.rand(steps * q - first, generator=generator)
    uniforms = uniforms.to(device)  # (b, tokens to draw)
    given = None
    if forced is not None:
        given = torch.full((batch, steps * q), -1, dtype=torch.long, device=device)
        given[:clips] = forced.reshape(clips, -1).to(device)
    if cached:
        prior.setup_cache(batch)
    try:
        # the slot of codes where the current window begins: a long prefix starts where a
        # slide would have left it
        window_start, fresh = (0 if first < window else first - keep), True
        for i in range(first, steps * q):
            if i - window_start == window:  # full: slide, keeping the newest steps
                window_start, fresh = i - keep, True
            if fresh or not cached:
                tokens = codes[:, window_start:i] + offsets[window_start:i]
                logits = prior(torch.cat([bos, tokens], dim=1))[:, -1]
                fresh = False
            else:  # the cache holds slots up to i - 1: feed the one token they lack
                token = codes[:, i - 1 : i] + offsets[i - 1]
                logits = prior(token, start=i - window_start)[:, -1]
            drawn = sample_next(logits, sampling, uniforms[:, i - first])
            codes[:, i] = (
                drawn if given is None else torch.where(given[:, i] >= 0, given[:, i], drawn)
            )
    finally:
        prior.clear_cache()
    return codes[:clips].view(clips, steps, q)
