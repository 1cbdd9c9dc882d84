"""A training run's life around its loop: start or resume, a checkpoint every epoch, stop
when asked (or when validation stops improving), end completed or failed.

The VQ-VAE and prior loops (training/vqvae.py, training/prior.py) differ in what an epoch
does and share everything else, which lives here, so that a resume, a cancel or a failure
means the same for every run type. A RunLifecycle holds what a run carries from epoch to
epoch (the history, the best epoch, its score and its weights) and is the one place that
writes or reads the run's checkpoint: a resumed run goes on as if it never stopped (the
model, the optimizer, the crop sampler's RNG and torch's global RNG come back).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from distill.events import (
    STOP_KEPT,
    STOP_PATIENCE,
    CheckpointSaved,
    EpochMetrics,
    Payload,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
)
from distill.files import DiskFullError
from distill.models.config import PriorConfig, VQVAEConfig
from distill.paths import CHECKPOINT_NAME, KEEP_BEST_FILE
from distill.run_types import Emit
from distill.training.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from distill.training.settings import PriorSettings, TrainSettings


class RunResult(NamedTuple):
    status: str  # "completed" or "cancelled"
    model_path: Path | None
    history: list[dict[str, Any]]


class RunStart(NamedTuple):
    checkpoint_path: Path  # where this run's checkpoint is written, and read on resume
    started: float  # time.monotonic() when it began, for RunCompleted's seconds


@contextlib.contextmanager
def training_run(emit: Emit, run_dir: Path, seed: int) -> Iterator[RunStart]:
    """Around a training run: its folder made and torch's RNG seeded before it begins;
    any error ends it with RunFailed, naming the checkpoint to resume from when there is
    one, then propagates. A full disk says so and names the file that did not fit (every
    write goes through distill/files.py, which names it), not "OSError: [Errno 28]"."""
    start = RunStart(run_dir / CHECKPOINT_NAME, time.monotonic())
    try:
        torch.manual_seed(seed)
        run_dir.mkdir(parents=True, exist_ok=True)
        yield start
    except Exception as error:
        existing = str(start.checkpoint_path) if start.checkpoint_path.exists() else None
        why = str(error) if isinstance(error, DiskFullError) else f"{type(error).__name__}: {error}"
        emit(RunFailed(error=why, checkpoint_path=existing))
        raise


def copy_state(module: torch.nn.Module) -> dict[str, Tensor]:
    """A module's weights as they are now, untouched by the steps that follow."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class RunLifecycle:
    """One run's state between epochs, its checkpoint, and the events that frame its loop.

    `score_name` names the best score in the checkpoint ("best_loss", "best_perplexity"):
    lower is better. `kept` names more lists the loop appends to and the checkpoint keeps
    (the prior's memorization warnings); a resume refills them in place.

    Two ways out of the loop before its last epoch end the run completed, with the best
    epoch saved as a finished run would save it: `out_of_patience` (validation has not
    improved for `settings.patience` epochs) and `keeps_best` (a stop request that asked,
    through KEEP_BEST_FILE in the run's folder, to keep the best epoch so far).
    `stopped_early` says which, for RunCompleted.
    """

    def __init__(
        self,
        emit: Emit,
        start: RunStart,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,  # the crop sampler's
        config: VQVAEConfig | PriorConfig,
        settings: TrainSettings | PriorSettings,
        score_name: str,
        kept: dict[str, list[Any]] | None = None,
    ) -> None:
        self.emit = emit
        self.checkpoint_path = start.checkpoint_path
        self.started = start.started
        self.model = model
        self.optimizer = optimizer
        self.generator = generator
        # what was built and how it trains, as RunStarted and every checkpoint record it
        self.config = {"model": config.to_dict(), "training": dataclasses.asdict(settings)}
        self.score_name = score_name
        self.kept = kept or {}
        self.history: list[dict[str, Any]] = []  # every epoch's metrics, as dicts
        self.best_epoch = -1
        self.best_score = math.inf
        self.best_state: dict[str, Tensor] = {}  # the best epoch's weights
        self.start_epoch = 0
        self.patience = settings.patience
        self.keep_file = start.checkpoint_path.parent / KEEP_BEST_FILE
        self.stopped_early = ""  # "", STOP_PATIENCE or STOP_KEPT

    def resume(self) -> bool:
        """Go on from the checkpoint, when there is one; False when there is none."""
        if not self.checkpoint_path.exists():
            return False
        state = load_checkpoint(self.checkpoint_path)
        self.model.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        self.generator.set_state(state.sampler_rng)
        torch.set_rng_state(state.global_rng)
        self.best_state = state.best
        # a checkpoint from before a field's rename reads under the current names
        self.history = [EpochMetrics.upgraded(e) for e in state.info.get("history", [])]
        for name, values in self.kept.items():
            values[:] = state.info.get(name, [])
        self.best_epoch = state.info.get("best_epoch", -1)
        self.best_score = state.info.get(self.score_name, math.inf)
        self.start_epoch = state.next_epoch
        return True

    def begin(self, run_type: str, dataset: str, epochs: int, steps: int) -> None:
        """RunStarted; a new run's weights as they are now are the best until an epoch
        scores."""
        if not self.best_state:
            self.best_state = copy_state(self.model)
        config = self.config
        self.emit(RunStarted(run_type, dataset, epochs, self.start_epoch, steps, config))

    def record(self, metrics: Payload) -> None:
        """An epoch's metrics: into the history (the card's curves, the checkpoint), then out."""
        self.history.append(metrics.to_dict())
        self.emit(metrics)

    def keep_if_best(self, epoch: int, score: float) -> None:
        """Remember this epoch's weights when its score is the lowest yet."""
        if score < self.best_score:
            self.best_epoch, self.best_score = epoch, score
            self.best_state = copy_state(self.model)

    def out_of_patience(self, epoch: int) -> bool:
        """True when `patience` epochs have passed since the best one (never with 0)."""
        if self.patience > 0 and epoch - self.best_epoch >= self.patience:
            self.stopped_early = STOP_PATIENCE
        return self.stopped_early == STOP_PATIENCE

    def keeps_best(self) -> bool:
        """Asked to stop: True when the request asked to keep the best epoch and there is
        one to keep (a run stopped in its first epoch has none: it only checkpoints)."""
        if self.keep_file.exists() and self.history:
            self.stopped_early = STOP_KEPT
        return self.stopped_early == STOP_KEPT

    def best(self) -> dict[str, Any]:
        """The best epoch's metrics (the last epoch's when none scored)."""
        return self.history[self.best_epoch]

    def checkpoint(self, next_epoch: int) -> None:
        """Everything a resume needs to start at `next_epoch`; CheckpointSaved."""
        info = {
            "history": self.history,
            **self.kept,
            "best_epoch": self.best_epoch,
            self.score_name: self.best_score,
            **self.config,
        }
        state = TrainingState(
            next_epoch,
            self.model.state_dict(),
            self.best_state,
            self.optimizer.state_dict(),
            self.generator.get_state(),
            torch.get_rng_state(),
            info,
        )
        save_checkpoint(self.checkpoint_path, state)
        self.emit(CheckpointSaved(next_epoch, str(self.checkpoint_path)))

    def cancelled(self, next_epoch: int) -> RunResult:
        """Stop on request: checkpoint the weights as they are, so a resume starts at
        `next_epoch` (an epoch stopped midway runs again whole)."""
        self.checkpoint(next_epoch)
        self.emit(RunCancelled(next_epoch, str(self.checkpoint_path)))
        return RunResult("cancelled", None, self.history)

    def completed(self, model_path: Path) -> RunResult:
        """RunCompleted with the best epoch's validation loss, once the model is saved."""
        best = self.best()
        seconds = time.monotonic() - self.started
        self.emit(
            RunCompleted(
                best["epoch"],
                best["val_loss"],
                str(model_path),
                seconds,
                self.stopped_early,
                self.history[-1]["epoch"] + 1,
                self.patience,
            )  # fmt: skip
        )
        return RunResult("completed", model_path, self.history)
