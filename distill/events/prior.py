"""The prior's training: its codes, steps and epochs, memorization warnings, and the
measures of what it generates after training."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from distill.events.base import Payload
from distill.events.runs import SkippedFile


@dataclass(frozen=True)
class CodesExtracted(Payload):
    """The prior's data: the dataset's codes through the model's frozen VQ-VAE."""

    kind: ClassVar[str] = "codes_extracted"
    dataset: str
    model_path: str
    files_used: list[str]
    files_skipped: list[SkippedFile]
    train_files: int
    val_files: int
    train_tokens: int  # codes of the training files' audible steps (padding left out)
    val_tokens: int
    rvq_levels: int
    codebook_size: int
    context_steps: int  # time steps in one window of the prior
    memorization_threshold: float  # a val_perplexity under this warns (see training/prior.py)
    dataset_changed: bool  # the files differ from those the VQ-VAE was trained on


@dataclass(frozen=True)
class PriorStepMetrics(Payload):
    """One optimizer step of a prior. May be coalesced for slow followers (latest wins)."""

    kind: ClassVar[str] = "prior_step_metrics"
    epoch: int
    step: int
    steps_per_epoch: int
    loss: float  # cross-entropy of the batch's audible tokens, nats


@dataclass(frozen=True)
class PriorEpochMetrics(Payload):
    """The end of a prior's epoch: losses in nats per code, on audible steps only."""

    kind: ClassVar[str] = "prior_epoch_metrics"
    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    val_perplexity: float  # exp(val_loss): codes the prior hesitates between, on average
    best_epoch: int  # lowest val_perplexity so far
    seconds: float
    train_perplexity: float = math.nan  # exp(train_loss), dropout on; NaN in older runs


# What a MemorizationWarning found (see training/memorization.py).
CAUSE_VAL_PERPLEXITY = "val_perplexity"  # validation perplexity under the threshold
CAUSE_GAP = "perplexity_gap"  # val far above train and rising while train falls
CAUSE_COPY_RATE = "copy_rate"  # sampled clips replay training files


@dataclass(frozen=True)
class MemorizationWarning(Payload):
    """The prior is likely replaying its training sounds (training/memorization.py)."""

    kind: ClassVar[str] = "memorization_warning"
    epoch: int
    val_perplexity: float
    threshold: float  # the bound `measured` crossed
    message: str  # what it means and what to do
    cause: str = CAUSE_VAL_PERPLEXITY  # one of the CAUSE_ names above
    measured: float | None = None  # val_perplexity, val/train perplexity ratio, or copy_rate
    train_perplexity: float | None = None


@dataclass(frozen=True)
class CopiesMeasured(Payload):
    """After a prior's last epoch: how many clips sampled from its kept weights are copies.
    Recorded by older runs only (today's report it in GenerationMeasured.copy_share)."""

    kind: ClassVar[str] = "copies_measured"
    epoch: int  # the epoch whose weights were sampled (the best one)
    sampled_clips: int
    copies: int  # clips whose run shared with one training file covers most of their sound
    copy_rate: float  # copies / clips
    mean_shared_share: float  # mean over clips of (longest shared run / sounding steps)
    threshold: float  # a copy_rate at or over this warns


@dataclass(frozen=True)
class GenerationMeasured(Payload):
    """After a prior's last epoch: clips sampled from its kept weights through the
    product's generate path, measured against the dataset's sounds on an embedding no
    model made (training/generation_report.py, audio/generation_figures.py), each figure
    beside its "copies" anchor (the training sounds offered as if generated) and its
    "noise" anchor (decaying noise bursts). Replaces CopiesMeasured: the copy share is
    one of its figures. A figure without data (too few sounds) is None."""

    kind: ClassVar[str] = "generation_measured"
    epoch: int  # the epoch whose weights were sampled (the best one)
    sampled_clips: int
    kad: float | None  # kernel audio distance x100 to the real set; 0 = same distribution
    kad_low: float | None  # bootstrap interval (5-95%)
    kad_high: float | None
    kad_copies: float | None
    kad_noise: float | None
    split_floor: float | None  # KAD between two halves of the real set
    precision: float  # share of clips among the real sounds ("plausible")
    coverage: float  # share of real sounds with a clip near them ("varied")
    coverage_low: float | None
    coverage_high: float | None
    coverage_copies: float
    coverage_noise: float
    copy_share: float  # share of clips that are a training sound again (generation_figures)
    novelty: float | None  # distance to the training sounds over a held-out sound's; 1 = as new
    silent_share: float
    onset_share: float  # share of clips that start on their sound
    onset_real: float  # the same share for the dataset's own sounds
    copy_share_bound: float  # a copy_share at or over this warns (MemorizationWarning)
    seconds: float  # sampling and measuring

    @property
    def kad_way(self) -> float | None:
        """The clips' KAD as a percentage of the way from the copies anchor to noise."""
        if self.kad is None or self.kad_copies is None or self.kad_noise is None:
            return None
        span = self.kad_noise - self.kad_copies
        return 100.0 * (self.kad - self.kad_copies) / span if span > 0 else None

    def words(self) -> list[tuple[str, str]]:
        """The figures as a musician reads them: (word, sentence) rows, the same on the
        run page, the model page, the CLI and `models show`."""
        rows = [
            (
                "plausible",
                f"{self.precision:.0%} of {self.sampled_clips} clips sit among your sounds "
                f"(precision {self.precision:.2f})",
            ),
            (
                "varied",
                f"they come near {self.coverage:.0%} of your sounds (coverage "
                f"{_range(self.coverage, self.coverage_low, self.coverage_high)}; your own "
                f"training sounds {self.coverage_copies:.2f}, noise {self.coverage_noise:.2f})",
            ),
            (
                "new",
                f"{self.copy_share:.0%} are copies of a training sound; novelty "
                f"{_number(self.novelty)} (1.0 is as new as a sound of yours it never heard, "
                "0 a copy)",
            ),
        ]
        way = self.kad_way
        rows.append(
            (
                "like yours",
                f"KAD {_range(self.kad, self.kad_low, self.kad_high)}"
                + (f", {way:.0f}% of the way" if way is not None else "")
                + f" from your own sounds ({_number(self.kad_copies)}) to noise "
                f"({_number(self.kad_noise)}); two halves of your set differ by "
                f"{_number(self.split_floor)}",
            )
        )
        rows.append(
            (
                "onset",
                f"{self.onset_share:.0%} of clips start on their sound (your sounds: "
                f"{self.onset_real:.0%})",
            )
        )
        if self.silent_share > 0:
            rows.append(("silent", f"{self.silent_share:.0%} of clips are silent"))
        return rows


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _range(value: float | None, low: float | None, high: float | None) -> str:
    if value is None or low is None or high is None:
        return _number(value)
    return f"{value:.2f}, {low:.2f} to {high:.2f}"


@dataclass(frozen=True)
class PriorSaved(Payload):
    """The trained prior was written into its model's file."""

    kind: ClassVar[str] = "prior_saved"
    name: str
    path: str
