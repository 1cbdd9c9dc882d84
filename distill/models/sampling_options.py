"""How each code is drawn from a prior: options only, free of torch, so a request can
be checked (and a job planned) in a process that never loads a model."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Sampling:
    """How each code is drawn from the prior's distribution."""

    temperature: float = 1.0  # 0 = always the likeliest code; >1 = wilder
    top_k: int = 0  # keep only the k likeliest codes; 0 = all
    top_p: float = 1.0  # keep the fewest codes whose probability adds up to top_p; 1 = all

    def __post_init__(self) -> None:
        if not 0 <= self.temperature < math.inf:  # NaN and inf too: JSON cannot hold them
            raise ValueError(f"temperature must be a finite number from 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must not be negative, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
