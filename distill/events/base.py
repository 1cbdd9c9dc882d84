"""What every event shares: the Payload base, a level's codebook health, the splits and
the run statuses every layer names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

TRAIN_SPLIT = "train"  # the files a model trained on
VAL_SPLIT = "val"  # the files held out from training


# Every status a run can have: the one list the CLI, the API, the store and the pages use.
RUN_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
UNFINISHED_STATUSES = ("queued", "running")  # a run still waiting or producing events


@dataclass(frozen=True)
class LevelHealth:
    """Codebook health of one RVQ level, counted over every audible latent vector of one
    split (the training files, or the held-out files). Definitions: models/health.py."""

    level: int  # 1-based: level 1 quantizes the encoder output, level k its residual
    codebook_size: int
    utilization: float  # share of codes used at least once, 0..1
    perplexity: float  # exp(entropy of code usage); codebook_size when use is uniform
    dead_codes: int  # codes never used in the pass
    error_reduction: float  # reconstruction loss with levels 1..k-1 minus with 1..k
    vectors: int = 0  # audible latent vectors counted (0: a run recorded before counting)


@dataclass(frozen=True)
class Payload:
    """Base of every event payload; `kind` names it on the wire and in SQLite."""

    kind: ClassVar[str] = ""
    # Old field name -> current one: a payload written before a rename (a checkpoint's
    # history, an event from before the store's migration) still reads.
    renamed: ClassVar[dict[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def upgraded(cls, data: dict[str, Any]) -> dict[str, Any]:
        """`data` (this kind's JSON form) with old field names replaced by current ones."""
        if not any(old in data for old in cls.renamed):
            return data
        return {cls.renamed.get(key, key): value for key, value in data.items()}
