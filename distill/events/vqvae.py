"""The VQ-VAE's training: steps, epochs with codebook health, codebook warnings, previews
and the decoder stage."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from distill.events.base import LevelHealth, Payload


@dataclass(frozen=True)
class StepMetrics(Payload):
    """One optimizer step. May be coalesced for slow followers (latest wins)."""

    kind: ClassVar[str] = "step_metrics"
    epoch: int  # 0-based
    step: int  # 0-based within the epoch
    steps_per_epoch: int
    loss: float
    recon_loss: float
    commit_loss: float


@dataclass(frozen=True)
class EpochMetrics(Payload):
    """The end of an epoch: losses (audible frames only) and per-level codebook health,
    on the held-out files (`val_levels`) and on the training files (`train_levels`)."""

    kind: ClassVar[str] = "epoch_metrics"
    renamed: ClassVar[dict[str, str]] = {"levels": "val_levels"}  # before store schema 8
    epoch: int
    epochs: int
    train_loss: float
    train_recon_loss: float
    train_commit_loss: float
    val_loss: float
    val_recon_loss: float
    val_commit_loss: float
    val_levels: list[LevelHealth]
    best_epoch: int
    seconds: float
    train_levels: list[LevelHealth] = dataclasses.field(default_factory=list)
    val_mel_error: float | None = None  # mean |log-mel error| on held-out sounds' own frames


CAUSE_UTILIZATION = "utilization"  # a level uses too few of its codes
CAUSE_LOW_GAIN = "low_gain"  # a level lowers the error by a tiny share of level 1's


@dataclass(frozen=True)
class CodebookWarning(Payload):
    """A level uses too few of its codes (under the warning threshold), or, with
    cause CAUSE_LOW_GAIN, earns almost nothing (its error reduction under `threshold`
    times level 1's)."""

    kind: ClassVar[str] = "codebook_warning"
    epoch: int
    level: int
    utilization: float
    threshold: float  # the utilization, or the share of level 1's reduction, it fell under
    message: str
    cause: str = CAUSE_UTILIZATION


@dataclass(frozen=True)
class PreviewClip:
    """One validation clip's preview files, relative to the run folder."""

    name: str
    original_wav: str
    ceiling_wav: str  # the original's own mel through Griffin-Lim: the old ceiling
    reconstruction_wav: str  # the model, heard the default way (its decoder stage, if any)
    level_wavs: list[str]  # reconstruction from levels 1..k, k = 1..levels, heard the same way
    original_png: str
    reconstruction_png: str
    # The model's mel through Griffin-Lim, beside the decoder stage's rendering; "" while
    # there is no trained stage (reconstruction_wav is then itself Griffin-Lim).
    griffin_lim_wav: str = ""
    source_file: str = ""  # the held-out file it is (its name); "" in older runs


@dataclass(frozen=True)
class DecoderStageProgress(Payload):
    """The decoder stage's training, after the VQ-VAE's epochs (training/stage.py)."""

    kind: ClassVar[str] = "decoder_stage_progress"
    step: int  # steps done
    steps: int
    train_loss: float  # mean so far: log-magnitude L1 plus spectral convergence
    seconds: float = 0.0  # since the stage began (its time left is estimated from it)


@dataclass(frozen=True)
class DecoderStageTrained(Payload):
    """The decoder stage is trained; its kept weights are the best on held-out files."""

    kind: ClassVar[str] = "decoder_stage_trained"
    steps: int
    train_loss: float
    # On the held-out files, the model's magnitude against the true one (lower is closer,
    # before Griffin-Lim's phase), with the pseudo-inverse (what Griffin-Lim is given
    # without a stage) and through the kept stage: the stage's loss (mean), which picks
    # the weights kept, and the spectral convergence (median).
    val_loss_baseline: float
    val_loss: float
    val_convergence_baseline: float
    val_convergence: float
    seconds: float

    @property
    def helped(self) -> bool:
        """The kept stage beats the pseudo-inverse it started as, on held-out sounds."""
        return self.val_loss < self.val_loss_baseline


@dataclass(frozen=True)
class PreviewReady(Payload):
    """Reconstruction previews were written for this epoch."""

    kind: ClassVar[str] = "preview_ready"
    epoch: int
    clips: list[PreviewClip]
