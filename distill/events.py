"""The one schema for everything a run reports.

Training loops emit *payloads*: small frozen dataclasses, one per kind, each with the
kind name it travels under. The core wraps a payload in an `Event` that adds `run_id`,
`seq` and `ts`. The store, the dashboard and the CLI all read these field names, so a
quantity has exactly one name everywhere (`dead_codes`, never `dead_code_count`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunQueued(Payload):
    """A run was accepted and waits for a worker."""

    kind: ClassVar[str] = "run_queued"
    run_type: str  # "vqvae" or "prior"
    dataset: str
    config: dict[str, Any]


@dataclass(frozen=True)
class RunStarted(Payload):
    """A worker began the run (or resumed it from `start_epoch`)."""

    kind: ClassVar[str] = "run_started"
    run_type: str
    dataset: str
    epochs: int
    start_epoch: int
    steps_per_epoch: int
    config: dict[str, Any]


@dataclass(frozen=True)
class RunPlaced(Payload):
    """A cluster worker took the run (a run without this event ran in the local pool)."""

    kind: ClassVar[str] = "run_placed"
    worker: str  # the worker's address, e.g. tcp://10.0.0.7:39123
    name: str  # the worker's name as the cluster gives it


@dataclass(frozen=True)
class SkippedFile:
    """A file the scan could not use, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class DatasetScanned(Payload):
    """The preflight: what the folder holds and what training will see."""

    kind: ClassVar[str] = "dataset_scanned"
    dataset: str
    files_used: list[str]
    files_skipped: list[SkippedFile]
    total_seconds: float
    train_files: int
    val_files: int
    latent_vectors: int  # audible latent vectors in the training files (padding left out)
    codebook_size: int
    rvq_levels: int
    suggested_codebook_size: int


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
    on the held-out files (`levels`) and on the training files (`train_levels`)."""

    kind: ClassVar[str] = "epoch_metrics"
    epoch: int
    epochs: int
    train_loss: float
    train_recon_loss: float
    train_commit_loss: float
    val_loss: float
    val_recon_loss: float
    val_commit_loss: float
    levels: list[LevelHealth]
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


@dataclass(frozen=True)
class CheckpointSaved(Payload):
    """A resumable checkpoint was written atomically."""

    kind: ClassVar[str] = "checkpoint_saved"
    next_epoch: int  # the epoch a resume starts from
    path: str


@dataclass(frozen=True)
class ModelSaved(Payload):
    """The trained model landed in the library."""

    kind: ClassVar[str] = "model_saved"
    name: str
    path: str


# Why a completed run trained fewer epochs than it was asked (RunCompleted.stopped_early).
STOP_PATIENCE = "patience"  # validation did not improve for `patience` epochs
STOP_KEPT = "stopped_keeping_best"  # stopped on request; the best epoch so far was kept


@dataclass(frozen=True)
class RunCompleted(Payload):
    """The run ended with its model saved: every epoch, or fewer when it stopped early."""

    kind: ClassVar[str] = "run_completed"
    best_epoch: int
    best_val_loss: float  # the val_loss of best_epoch
    model_path: str
    seconds: float
    stopped_early: str = ""  # "" (every epoch ran), STOP_PATIENCE or STOP_KEPT
    epochs_run: int = 0  # epochs finished (0: a run recorded before this was counted)
    patience: int = 0  # the patience it trained with; 0: off

    def stop_words(self, epochs: int) -> str:
        """How the run came to end, in words (the CLI's summary and the run page's), given
        the epochs it was asked for; "" for a run that trained them all."""
        ran = f"after {self.epochs_run} of {epochs} epochs"
        if self.stopped_early == STOP_PATIENCE:
            return (
                f"stopped early {ran}: validation had not improved for {self.patience} "
                f"epochs since the best one, epoch {self.best_epoch + 1}, which the model keeps"
            )
        if self.stopped_early == STOP_KEPT:
            return (
                f"stopped on request {ran}; the best epoch so far, epoch "
                f"{self.best_epoch + 1}, was kept as the model"
            )
        return ""


@dataclass(frozen=True)
class RunFailed(Payload):
    """The run stopped on an error; its last checkpoint stays resumable."""

    kind: ClassVar[str] = "run_failed"
    error: str
    checkpoint_path: str | None = None


@dataclass(frozen=True)
class RunCancelled(Payload):
    """The run was stopped on request after writing a checkpoint."""

    kind: ClassVar[str] = "run_cancelled"
    epoch: int
    checkpoint_path: str | None = None


@dataclass(frozen=True)
class RunInterrupted(Payload):
    """The core that ran it stopped before the run finished; resumable from its checkpoint.

    Never written by a training loop: whoever reads runs (a core at start-up, a listing,
    a page) writes it for a run left "queued" or "running" by a process that is gone
    (core/owners.py). (A worker that dies under a live core is a `RunFailed`, with the
    reason, and is just as resumable.)
    """

    kind: ClassVar[str] = "run_interrupted"
    reason: str
    checkpoint_path: str | None = None


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


@dataclass(frozen=True)
class CopyCheck:
    """How much of a generated clip is a stretch of the prior's training codes."""

    longest_run_steps: int  # longest stretch of time steps equal, every level, to one in training
    longest_run_seconds: float
    longest_run_share: float  # longest_run_steps / the clip's steps, 0..1
    clip_offset_seconds: float  # where that stretch starts in the clip
    nearest_file: str  # the training file holding it (relative to its dataset); "" if none
    nearest_offset_seconds: float  # where the stretch starts in that file


@dataclass(frozen=True)
class ClipGenerated(Payload):
    """One generated clip was written."""

    kind: ClassVar[str] = "clip_generated"
    index: int  # 0-based within the request
    path: str
    seconds: float
    seed: int
    copy_check: CopyCheck
    match_path: str = ""  # the nearest training file's stretch, lined up with the clip; "" if none
    one_shot: bool = False  # one sound, cut where it decayed (seconds is then its own length)
    tries: int = 1  # draws it took: a silent draw is drawn again (inference/one_shot.py)
    silent: bool = False  # every try was silent: reported, not hidden
    rms: float = 0.0  # of the written audio, full scale 1
    variation_of: str = ""  # a variation: the training file whose first level it keeps


PAYLOAD_TYPES: dict[str, type[Payload]] = {
    cls.kind: cls
    for cls in (
        RunQueued,
        RunStarted,
        RunPlaced,
        DatasetScanned,
        StepMetrics,
        EpochMetrics,
        CodebookWarning,
        PreviewReady,
        DecoderStageProgress,
        DecoderStageTrained,
        CheckpointSaved,
        ModelSaved,
        RunCompleted,
        RunFailed,
        RunCancelled,
        RunInterrupted,
        CodesExtracted,
        PriorStepMetrics,
        PriorEpochMetrics,
        MemorizationWarning,
        CopiesMeasured,  # runs recorded before GenerationMeasured: still read
        GenerationMeasured,
        PriorSaved,
        ClipGenerated,
    )
}
TERMINAL_KINDS = frozenset(
    {RunCompleted.kind, RunFailed.kind, RunCancelled.kind, RunInterrupted.kind}
)
# Step metrics are progress gauges: the bus may coalesce them (latest wins).
STEP_KINDS = frozenset({StepMetrics.kind, PriorStepMetrics.kind, DecoderStageProgress.kind})
_NESTED = {
    "levels": LevelHealth,
    "train_levels": LevelHealth,
    "files_skipped": SkippedFile,
    "clips": PreviewClip,
    "copy_check": CopyCheck,
}


def payload_from_dict(kind: str, data: dict[str, Any]) -> Payload:
    """Rebuild a typed payload from its JSON form (the inverse of `Payload.to_dict`)."""
    cls = PAYLOAD_TYPES[kind]
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name in _NESTED:
            nested = _NESTED[f.name]
            value = nested(**value) if isinstance(value, dict) else [nested(**v) for v in value]
        values[f.name] = value
    return cls(**values)


@dataclass(frozen=True)
class Event:
    """A payload stamped with its place in one run's stream."""

    run_id: str
    seq: int  # 1, 2, 3 ... per run, no gaps
    kind: str
    payload: dict[str, Any]
    ts: float = field(default_factory=time.time)

    def typed(self) -> Payload:
        return payload_from_dict(self.kind, self.payload)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
