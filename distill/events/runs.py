"""A run's life, whatever it trains: queued, started, placed, its dataset scanned, its
checkpoints and model saved, and how it ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from distill.events.base import Payload


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
