"""Is the prior learning its sounds or replaying them? Three checks, one warning kind.

A prior that memorises its training set predicts the training codes almost exactly and
held-out sounds badly, and what it samples is stretches of training files. Each check
below catches one face of that; each fires a MemorizationWarning naming its `cause`.

- "val_perplexity" (every epoch it holds): validation perplexity under
  `memorization_threshold(files)`: 2, 3 or 5 by the dataset's size tier (events.py).
  Perplexity reads as "codes the prior hesitates between at each step" of sounds it
  never trained on; being nearly sure of unheard sounds means they are (near) copies of
  training sounds. The line rises with the dataset: a handful of takes of one kick can
  be honestly predictable, hundreds of varied files cannot.
- "perplexity_gap" (on the epoch it starts): the prior is far surer of its training
  sounds than of held-out ones, and getting worse on the held-out ones. Both must hold:
  val_perplexity / train_perplexity over GAP_RATIO, and val_perplexity risen to over
  VAL_RISE times its best while train_perplexity is lower than at that best epoch. Held
  out sounds can simply be harder than the training ones (a gap alone is no proof),
  but a gap that widens while the training fit improves is learning by heart. The real
  case that asked for it: a 17-file drum kit, validation perplexity 43 at epoch 2 and
  1,176 at epoch 30 while the training perplexity fell to 1.2. The train perplexity is
  measured with dropout on, so the gap it shows is if anything too small.
- "copy_rate" (once, after the last epoch, on the kept weights): clips generated from
  the kept prior are measured against the dataset (training/generation_report.py, the
  GenerationMeasured report); a clip is a copy when it lies within half the distance
  from its nearest training sound to that sound's nearest other (audio/
  generation_figures.py). At a copy share of COPY_SHARE_BOUND or more it warns.

What to do is the same for all three, and every message says it: the best epoch is
already the one kept, so train fewer --epochs (or keep them and accept the best one),
a smaller prior (--hidden-size, --layers) or more, more varied sounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from distill.audio.generation_figures import COPY_RATIO
from distill.constants import size_tier
from distill.events import (
    CAUSE_COPY_RATE,
    CAUSE_GAP,
    CAUSE_VAL_PERPLEXITY,
    GenerationMeasured,
    MemorizationWarning,
)

MEMORIZATION_THRESHOLDS = (2.0, 3.0, 5.0)  # the val_perplexity check's line, by size_tier
GAP_RATIO = 4.0  # val_perplexity / train_perplexity over this ...
VAL_RISE = 1.5  # ... and val_perplexity over this times its best, train still falling

ADVICE = (
    "the best epoch is already the one kept; try fewer --epochs, a smaller prior "
    "(--hidden-size, --layers) or more, more varied sounds"
)


def memorization_threshold(file_count: int) -> float:
    """The val_perplexity under which a prior of a `file_count`-file dataset warns."""
    return MEMORIZATION_THRESHOLDS[size_tier(file_count)]


def low_perplexity_warning(
    epoch: int, val_perplexity: float, train_perplexity: float, threshold: float
) -> MemorizationWarning | None:
    """The seeds' rule: validation perplexity under the dataset's threshold."""
    if not val_perplexity < threshold:
        return None
    message = (
        f"validation perplexity {val_perplexity:.2f} is under {threshold:g}: the prior predicts "
        f"sounds it never trained on almost exactly, so it is likely replaying its training "
        f"set; {ADVICE}"
    )
    return MemorizationWarning(
        epoch, val_perplexity, threshold, message, CAUSE_VAL_PERPLEXITY, val_perplexity,
        train_perplexity,
    )  # fmt: skip


def _gap_holds(history: Sequence[dict[str, Any]], index: int) -> bool:
    """Whether the gap rule holds at history[index] (epochs in order, best_epoch kept)."""
    now = history[index]
    best = next((h for h in history[: index + 1] if h["epoch"] == now["best_epoch"]), now)
    val, train = now["val_perplexity"], math.exp(now["train_loss"])
    return (
        val > GAP_RATIO * train
        and val > VAL_RISE * best["val_perplexity"]
        and now["train_loss"] < best["train_loss"]
    )


def gap_warning(history: Sequence[dict[str, Any]]) -> MemorizationWarning | None:
    """The gap rule on the newest epoch of `history` (PriorEpochMetrics dicts), on the
    epoch it starts to hold only: once it holds, every later epoch would repeat it."""
    if not history or not _gap_holds(history, len(history) - 1):
        return None
    if len(history) > 1 and _gap_holds(history, len(history) - 2):
        return None
    now = history[-1]
    best = next(h for h in history if h["epoch"] == now["best_epoch"])
    val, train = now["val_perplexity"], math.exp(now["train_loss"])
    message = (
        f"validation perplexity {val:.1f} is {val / train:.1f}x the training perplexity "
        f"{train:.2f}, and it has risen from {best['val_perplexity']:.1f} at epoch "
        f"{best['epoch'] + 1} while the training perplexity kept falling: the prior is "
        f"learning its training sounds by heart instead of what they share; {ADVICE}"
    )
    return MemorizationWarning(now["epoch"], val, GAP_RATIO, message, CAUSE_GAP, val / train, train)


def copy_share_warning(
    measured: GenerationMeasured, val_perplexity: float, train_perplexity: float
) -> MemorizationWarning | None:
    """The warning when the clips sampled from the kept prior are mostly copies."""
    if measured.copy_share < measured.copy_share_bound:
        return None
    copies = round(measured.copy_share * measured.sampled_clips)
    message = (
        f"{copies} of {measured.sampled_clips} clips generated from the kept prior are copies of a "
        f"training sound (within {COPY_RATIO:.0%} of the distance from that sound to its "
        f"nearest other); what it generates will mostly be its training sounds again; {ADVICE}"
    )
    return MemorizationWarning(
        measured.epoch, val_perplexity, measured.copy_share_bound, message, CAUSE_COPY_RATE,
        measured.copy_share, train_perplexity,
    )  # fmt: skip
