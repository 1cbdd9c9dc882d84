"""Codebook health: how well each RVQ level uses its codes.

Counted over a whole pass, never per batch: a batch of 16 windows cannot show 256 codes
in use however healthy the codebook is, so per-batch counts would make health depend
on batch size. Counted twice each epoch: over every audible latent vector of the
training files (what the model saw: the figure the warning judges) and of the held-out
files. Only audible vectors count: a latent vector is audible when any of its mel frames
is the file's own, not padding; counting the padding would count silence.

Definitions (per level, from the code counts of the whole pass):
- vectors: the audible latent vectors counted. Fewer than MIN_VECTORS_PER_CODE per code
  cannot show a level's use: a uniform draw of 64 vectors from 64 codes hits only 63%
  of them. Such a level is reported as not judged, never warned about.
- utilization: codes used at least once / codebook size.
- perplexity: exp(H) with H the entropy (nats) of the usage distribution; it reads as
  "the number of codes in effective use": codebook size for uniform use, 1 for one code.
- dead_codes: codes never used in the pass.
- error_reduction: validation reconstruction loss decoding levels 1..k-1 minus the loss
  decoding levels 1..k; what level k adds. Positive is good.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads on first count: the CLI renders health without it
    from torch import Tensor

from distill.constants import LOW_GAIN_SHARE, LOW_UTILIZATION, MIN_VECTORS_PER_CODE
from distill.events import LevelHealth


def count_codes(indices: Tensor, codebook_size: int) -> Tensor:
    """(..., q) code indices -> (q, codebook_size) counts. Negative (masked) indices are ignored."""
    import torch

    flat = indices.reshape(-1, indices.shape[-1]).long()  # (N, q)
    counts = torch.zeros(flat.shape[1], codebook_size, dtype=torch.long)
    for level in range(flat.shape[1]):
        codes = flat[:, level]
        counts[level] = torch.bincount(codes[codes >= 0], minlength=codebook_size)[:codebook_size]
    return counts


def perplexity(counts: Tensor) -> float:
    """exp(entropy) of one level's usage; 0 when nothing was counted."""
    total = counts.sum().item()
    if total == 0:
        return 0.0
    p = counts[counts > 0].double() / total
    return math.exp(-(p * p.log()).sum().item())


def level_health(counts: Tensor, error_reduction: list[float] | None = None) -> list[LevelHealth]:
    """One LevelHealth per row of `counts` (q, codebook_size)."""
    levels, size = counts.shape
    reductions = error_reduction or [0.0] * levels
    report = []
    for level in range(levels):
        used = int((counts[level] > 0).sum().item())
        report.append(
            LevelHealth(
                level=level + 1,
                codebook_size=size,
                utilization=used / size,
                perplexity=perplexity(counts[level]),
                dead_codes=size - used,
                error_reduction=float(reductions[level]),
                vectors=int(counts[level].sum().item()),
            )
        )
    return report


def low_gain_levels(levels: list[LevelHealth], share: float = LOW_GAIN_SHARE) -> list[LevelHealth]:
    """Levels after the first whose error reduction is under `share` of level 1's: codes
    that cost a level's worth of tokens and earn almost nothing. Judged, like the
    utilization, only on enough vectors: on a handful the figures are noise."""
    if not levels or levels[0].error_reduction <= 0:
        return []
    first = levels[0].error_reduction
    return [h for h in levels[1:] if judged(h) and h.error_reduction < share * first]


def judged(health: LevelHealth) -> bool:
    """Enough vectors were counted to tell a level's use from chance."""
    return health.vectors >= MIN_VECTORS_PER_CODE * health.codebook_size


def low_utilization_levels(
    levels: list[LevelHealth], threshold: float = LOW_UTILIZATION
) -> list[LevelHealth]:
    """Levels that really under-use their codes: counted on enough vectors, and under."""
    return [h for h in levels if judged(h) and h.utilization < threshold]


def utilization_advice(health: LevelHealth, levels: list[LevelHealth]) -> str:
    """What to do about one under-used level, for the case at hand."""
    used = health.codebook_size - health.dead_codes
    if health.level > 1 and health.error_reduction <= 0:
        return "it adds nothing to the reconstruction: try fewer --rvq-levels"
    fitting = 8
    while fitting < used:
        fitting *= 2
    if fitting < health.codebook_size:
        return f"the data fills about {used} codes: try --codebook-size {fitting}"
    return "more varied sounds would let it use more codes"
