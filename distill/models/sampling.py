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
token, so clip i of a batch depends on its seed alone, not on which clips share its
batch or on whether the cache is used.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distill.models.prior import CodePrior
from distill.models.sampling_options import Sampling


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


@torch.no_grad()
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
    numbers are drawn either way, so a clip's draws still depend on its seed alone."""
    config = prior.config
    q, k, window = config.rvq_levels, config.codebook_size, config.sequence_length
    keep = (config.context_steps // 2) * q  # tokens carried into the next window
    batch = len(generators)
    device = prior.head.weight.device
    prior.eval()
    codes = torch.zeros(batch, steps * q, dtype=torch.long, device=device)
    offsets = (torch.arange(steps * q, device=device) % q) * k  # token = code + level * k
    bos = torch.full((batch, 1), prior.bos, dtype=torch.long, device=device)
    first = 0 if prefix is None else prefix.shape[1] * q
    if prefix is not None:
        codes[:, :first] = prefix.reshape(batch, -1).to(device)
    # every clip's uniforms at once: torch.rand(n) draws what n calls of torch.rand(()) would
    uniforms = torch.stack([torch.rand(steps * q - first, generator=g) for g in generators])
    uniforms = uniforms.to(device)  # (b, tokens to draw)
    given = None if forced is None else forced.reshape(batch, -1).to(device)
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
    return codes.view(batch, steps, q)
