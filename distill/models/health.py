"""Codebook health: how well each RVQ level uses its codes.

Counted over a whole validation pass, never per batch: a batch of 16 windows cannot
show 256 codes in use however healthy the codebook is, so per-batch counts would make
health depend on batch size.

Definitions (per level, from the code counts of the whole pass):
- utilization: codes used at least once / codebook size.
- perplexity: exp(H) with H the entropy (nats) of the usage distribution; it reads as
  "the number of codes in effective use": codebook size for uniform use, 1 for one code.
- dead_codes: codes never used in the pass.
- error_reduction: validation reconstruction loss decoding levels 1..k-1 minus the loss
  decoding levels 1..k; what level k adds. Positive is good.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from distill.core.events import LevelHealth
from distill.training.settings import LOW_UTILIZATION


def count_codes(indices: Tensor, codebook_size: int) -> Tensor:
    """(..., q) code indices -> (q, codebook_size) counts. Negative (masked) indices are ignored."""
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
            )
        )
    return report


def low_utilization_levels(
    levels: list[LevelHealth], threshold: float = LOW_UTILIZATION
) -> list[LevelHealth]:
    return [h for h in levels if h.utilization < threshold]
