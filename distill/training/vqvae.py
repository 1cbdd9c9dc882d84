"""Train a ConvVQVAE on a folder of sounds: `train_vqvae(spec, emit)`.

Read it top to bottom: scan, split, model, optimizer, k-means initialisation, the loop
(steps, evaluation, health, warnings, previews, checkpoint), then the best epoch's
decoder stage is trained (training/stage.py) and the model goes into the library. What
every run does around its loop (resume, a checkpoint each epoch, cancel, RunFailed) is
training/lifecycle.py's. The loop reports through `emit` and knows nothing of asyncio,
SQLite or HTTP: a test passes `list.append`, a worker passes a queue's `put`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from distill.audio.augment import PITCH_SHIFTS, augments, pitch_shifted_mels
from distill.audio.dataset import ScanReport, SoundFile, require_usable, scan_dataset
from distill.audio.mel_config import MelConfig
from distill.audio.windows import (
    Crops,
    CropSampler,
    fixed_crops,
    split_files,
    window_count,
)
from distill.constants import ERROR_REDUCTION_UNIT, LOW_GAIN_SHARE, LOW_UTILIZATION
from distill.events import (
    CAUSE_LOW_GAIN,
    STOP_KEPT,
    CodebookWarning,
    DatasetScanned,
    EpochMetrics,
    LevelHealth,
    ModelSaved,
    PreviewReady,
    StepMetrics,
)
from distill.models.config import MIN_RVQ_LEVELS, VQVAEConfig, codebook_size_for
from distill.models.health import (
    count_codes,
    level_health,
    low_gain_levels,
    low_utilization_levels,
    utilization_advice,
)
from distill.models.library import save_vqvae
from distill.models.rvqvae import ConvVQVAE, latent_mask, multiscale_mel_loss
from distill.run_types import Emit, never
from distill.training.lifecycle import RunLifecycle, RunResult, training_run
from distill.training.previews import preview_sources, write_previews
from distill.training.settings import TrainSettings, steps_per_epoch, training_device
from distill.training.stage import train_stage

KMEANS_INIT_WINDOWS = 512  # windows fed to the k-means initialisation, at most
MAX_VAL_WINDOWS_PER_FILE = 8


@dataclass(frozen=True)
class TrainSpec:
    """One training run: the data, what to build, how, and where things go."""

    dataset: Path
    run_dir: Path  # checkpoints and previews
    model_path: Path  # where the finished model lands in the library
    cache_dir: Path  # the mel cache
    settings: TrainSettings = field(default_factory=TrainSettings)
    overrides: dict[str, Any] = field(default_factory=dict)  # VQVAEConfig fields set by the user
    mel: MelConfig = field(default_factory=MelConfig)
    run_id: str = ""
    resume: bool = False  # go on from run_dir's checkpoint when there is one


class Evaluation(NamedTuple):
    mel_error: float  # mean |log-mel error| over audible frames: the headline figure
    recon_loss: float
    commit_loss: float
    loss: float
    levels: list[LevelHealth]


def train_vqvae(spec: TrainSpec, emit: Emit, should_stop: Callable[[], bool] = never) -> RunResult:
    """Run the whole training; on an error emit RunFailed, then re-raise."""
    with training_run(emit, spec.run_dir, spec.settings.seed) as start:
        # data: scan (cached), split by file, load mels
        data = prepare_data(spec)
        config, settings = data.config, spec.settings
        train_mels = [torch.from_numpy(s.load_mel()) for s in data.train_files]
        pad = math.log(config.mel.log_floor)
        generator = torch.Generator().manual_seed(settings.seed)
        takes = None
        if settings.augment and augments(len(data.report.usable)):
            takes = [
                [torch.from_numpy(m) for m in t]
                for t in pitch_shifted_mels(data.train_files, config.mel)
            ]
        sampler = CropSampler(
            train_mels, config.window_frames, pad, generator, takes, context=settings.augment
        )
        val_mels = [torch.from_numpy(s.load_mel()) for s in data.val_files]
        device = training_device(settings.device)
        val_windows = fixed_crops(val_mels, config.window_frames, pad, MAX_VAL_WINDOWS_PER_FILE)
        val_windows = val_windows.to(device)
        train_windows = fixed_crops(train_mels, config.window_frames, pad).to(device)
        emit(preflight_event(data))

        # model and optimizer: new, or as the checkpoint left them
        model = ConvVQVAE(config).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
        steps = steps_per_epoch(settings, sampler.natural_windows)
        run = RunLifecycle(
            emit, start, model, optimizer, generator,
            config, settings, score_name="best_loss",
        )  # fmt: skip
        if not (spec.resume and run.resume()):  # new: normalisation and codebooks from the data
            all_frames = torch.cat([m.flatten() for m in train_mels])
            model.set_normalization(all_frames.mean().item(), all_frames.std().item())
            initialise_codebooks(model, train_mels, config, pad)
        previews = preview_sources(data.val_files, config)
        run.begin("vqvae", str(data.report.root), settings.epochs, steps)

        for epoch in range(run.start_epoch, settings.epochs):
            epoch_started = time.monotonic()
            model.train()
            sums = torch.zeros(3, device=device)
            stopped = False
            for step in range(steps):
                if stopped := should_stop():
                    break
                batch = sampler.batch(settings.batch_size).to(device)
                out = model(batch.mels)
                recon = multiscale_mel_loss(out.reconstruction, batch.mels, batch.audible)
                loss = recon + config.commitment_weight * out.commit_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                values = torch.stack([loss.detach(), recon.detach(), out.commit_loss.detach()])
                sums += values
                loss_value, recon_value, commit_value = values.tolist()
                emit(StepMetrics(epoch, step, steps, loss_value, recon_value, commit_value))
            if stopped:  # keep the best epoch so far, or checkpoint for a resume of this epoch
                if run.keeps_best():
                    break
                return run.cancelled(epoch)

            evaluation = evaluate(model, val_windows, settings.batch_size)
            train_health = level_health(  # what each level adds is measured on held-out files
                audible_code_counts(model, train_windows, settings.batch_size),
                [h.error_reduction for h in evaluation.levels],
            )
            run.keep_if_best(epoch, evaluation.loss)
            train_loss, train_recon, train_commit = (sums / steps).tolist()
            metrics = EpochMetrics(
                epoch=epoch,
                epochs=settings.epochs,
                train_loss=train_loss,
                train_recon_loss=train_recon,
                train_commit_loss=train_commit,
                val_loss=evaluation.loss,
                val_recon_loss=evaluation.recon_loss,
                val_commit_loss=evaluation.commit_loss,
                val_levels=evaluation.levels,
                best_epoch=run.best_epoch,
                seconds=time.monotonic() - epoch_started,
                train_levels=train_health,
                val_mel_error=evaluation.mel_error,
            )
            run.record(metrics)
            if epoch >= 1:  # k-means leaves epoch 0's usage unrepresentative
                for weak in low_utilization_levels(train_health):  # judged on what it saw
                    emit(_low_utilization_warning(epoch, weak, train_health))
                for idle in low_gain_levels(evaluation.levels):  # on sounds it never heard
                    emit(_low_gain_warning(epoch, idle, evaluation.levels))

            last = epoch == settings.epochs - 1
            if previews and (last or (epoch + 1) % settings.preview_every == 0):
                emit(PreviewReady(epoch, write_previews(model, previews, spec.run_dir, epoch)))
            run.checkpoint(epoch + 1)
            if run.out_of_patience(epoch):
                break

        # the best epoch, with its decoder stage trained, goes into the library (a stop
        # that keeps the best skips the stage: its sounds play through Griffin-Lim)
        model.load_state_dict(run.best_state)
        best = run.best()
        card = _model_card(spec, data.report, config, settings, run.history, best)
        if model.stage is not None and run.stopped_early != STOP_KEPT:
            trained = train_stage(
                model, data.train_files, data.val_files, settings.stage_steps, settings.seed,
                emit, should_stop, PITCH_SHIFTS if takes else (), run.keeps_best,
            )  # fmt: skip
            if trained is None:  # cancelled; the epochs are kept and a resume trains the stage
                return run.cancelled(settings.epochs)
            card["decoder_stage"] = dataclasses.asdict(trained)
            if previews:  # what the saved model sounds like, through its stage
                clips = write_previews(model, previews, spec.run_dir, best["epoch"], stage=True)
                emit(PreviewReady(best["epoch"], clips))
        save_vqvae(spec.model_path, model, card)
        emit(ModelSaved(spec.model_path.stem, str(spec.model_path)))
        return run.completed(spec.model_path)


def initialise_codebooks(
    model: ConvVQVAE, mels: list[Tensor], config: VQVAEConfig, pad: float
) -> None:
    """Run k-means on many windows at once, not on the first small batch.

    vector-quantize-pytorch initialises each level's codebook by k-means on the first
    batch it sees in training mode; a batch of 16 windows may hold fewer vectors than a
    codebook has codes, which duplicates codes and lets a level collapse at once.
    """
    crops = fixed_crops(mels, config.window_frames, pad)
    crops = Crops(crops.mels[:KMEANS_INIT_WINDOWS], crops.audible[:KMEANS_INIT_WINDOWS])
    crops = crops.to(next(model.parameters()).device)
    model.train()
    with torch.no_grad():  # on the audible vectors only: padding would take half the codes
        model.quantize(model.encode(crops.mels), latent_mask(crops.audible, config.downsample))


def _audible_indices(indices: Tensor, audible: Tensor, downsample: int) -> Tensor:
    """(b, n, q) codes with those of silent (padding) vectors set to -1, which
    count_codes leaves out."""
    keep = latent_mask(audible, downsample).unsqueeze(-1)
    return torch.where(keep, indices, torch.full_like(indices, -1))


@torch.no_grad()
def audible_code_counts(model: ConvVQVAE, windows: Crops, batch_size: int) -> Tensor:
    """(q, codebook_size) code counts over every audible latent vector of `windows`."""
    model.eval()
    seen = []
    for start in range(0, len(windows.mels), batch_size):
        mels = windows.mels[start : start + batch_size]
        audible = windows.audible[start : start + batch_size]
        indices = model.quantize(model.encode(mels)).indices
        seen.append(_audible_indices(indices, audible, model.config.downsample))
    return count_codes(torch.cat(seen), model.config.codebook_size)


@torch.no_grad()
def evaluate(model: ConvVQVAE, windows: Crops, batch_size: int) -> Evaluation:
    """Losses and per-level health over the whole validation set, in one pass, counted
    on the audible frames and vectors only.

    Also decodes with levels 1..k for every k, so health can say how much each level
    lowers the reconstruction loss.
    """
    model.eval()
    levels = model.config.rvq_levels
    recon_sum = commit_sum = error_sum = 0.0
    partial_sums = [0.0] * (levels + 1)  # loss decoding levels 1..k, k = 0..levels
    indices_seen = []
    total = float(windows.audible.sum())
    for start in range(0, len(windows.mels), batch_size):
        batch = windows.mels[start : start + batch_size]
        audible = windows.audible[start : start + batch_size]
        out = model(batch)
        weight = float(audible.sum()) / total  # each window weighs by its audible frames
        commit_sum += out.commit_loss.item() * weight
        recon = multiscale_mel_loss(out.reconstruction, batch, audible).item()
        recon_sum += recon * weight
        error_sum += multiscale_mel_loss(out.reconstruction, batch, audible, (1,)).item() * weight
        partial_sums[levels] += recon * weight  # all levels: the forward pass decoded it
        for k in range(levels):
            decoded = model.decode_indices(out.indices, k)
            partial_sums[k] += multiscale_mel_loss(decoded, batch, audible).item() * weight
        indices_seen.append(_audible_indices(out.indices, audible, model.config.downsample))
    counts = count_codes(torch.cat(indices_seen), model.config.codebook_size)
    reductions = [partial_sums[k - 1] - partial_sums[k] for k in range(1, levels + 1)]
    loss = recon_sum + model.config.commitment_weight * commit_sum
    return Evaluation(error_sum, recon_sum, commit_sum, loss, level_health(counts, reductions))


def _low_utilization_warning(
    epoch: int, health: LevelHealth, levels: list[LevelHealth]
) -> CodebookWarning:
    used = health.codebook_size - health.dead_codes
    message = (
        f"level {health.level} uses {used} of its {health.codebook_size} codes "
        f"({health.utilization:.1%}, under {LOW_UTILIZATION:.0%}) over the "
        f"{health.vectors} audible vectors of the training files: "
        + utilization_advice(health, levels)
    )
    return CodebookWarning(epoch, health.level, health.utilization, LOW_UTILIZATION, message)


def _low_gain_warning(
    epoch: int, health: LevelHealth, levels: list[LevelHealth]
) -> CodebookWarning:
    first = levels[0].error_reduction
    message = (
        f"level {health.level} lowers the held-out error by {health.error_reduction:.4f} "
        f"({ERROR_REDUCTION_UNIT}), {health.error_reduction / first:.1%} of level 1's "
        f"{first:.4f} (under {LOW_GAIN_SHARE:.0%}): it earns almost nothing for its codes; "
        + (
            f"try --rvq-levels {health.level - 1}"
            if health.level - 1 >= MIN_RVQ_LEVELS
            else "try fewer --rvq-levels"
        )
    )
    return CodebookWarning(
        epoch, health.level, health.utilization, LOW_GAIN_SHARE, message, CAUSE_LOW_GAIN
    )


class PreparedData(NamedTuple):
    report: ScanReport
    config: VQVAEConfig
    train_files: list[SoundFile]
    val_files: list[SoundFile]
    train_windows: int  # non-overlapping windows in the training files


def prepare_data(spec: TrainSpec) -> PreparedData:
    """Scan (through the mel cache), size the model for the file count, split by file."""
    spec.cache_dir.mkdir(parents=True, exist_ok=True)
    report = scan_dataset(spec.dataset, spec.mel, spec.cache_dir)
    require_usable(report)
    overrides = dict(spec.overrides)
    if spec.settings.stage_steps == 0:  # no stage to train: the model is built without one
        overrides["decoder_stage_channels"] = 0
    config = VQVAEConfig.from_file_count(len(report.usable), mel=spec.mel, **overrides)
    train_files, val_files = split_files(
        report.usable, spec.settings.val_fraction, spec.settings.seed
    )
    train_windows = sum(window_count(s.frames, config.window_frames) for s in train_files)
    return PreparedData(report, config, train_files, val_files, train_windows)


def preflight_event(data: PreparedData) -> DatasetScanned:
    """What `distill train --check` prints: usable files, seconds, vectors against codes."""
    # audible vectors only: padding would promise k-means vectors the sounds do not have
    latent_vectors = sum(math.ceil(s.frames / data.config.downsample) for s in data.train_files)
    report = data.report
    return DatasetScanned(
        dataset=str(report.root),
        files_used=[str(s.path) for s in report.usable],
        files_skipped=list(report.skipped),
        total_seconds=report.total_seconds,
        train_files=len(data.train_files),
        val_files=len(data.val_files),
        latent_vectors=latent_vectors,
        codebook_size=data.config.codebook_size,
        rvq_levels=data.config.rvq_levels,
        suggested_codebook_size=suggest_codebook_size(len(report.usable), latent_vectors),
    )


def suggest_codebook_size(file_count: int, latent_vectors: int) -> int:
    """The size for this many files, halved until k-means has a codebook's worth of vectors."""
    size = codebook_size_for(file_count)
    while size > 8 and latent_vectors < size:
        size //= 2
    return size


def _model_card(
    spec: TrainSpec,
    report: ScanReport,
    config: VQVAEConfig,
    settings: TrainSettings,
    history: list[dict[str, Any]],
    best: dict[str, Any],
) -> dict[str, Any]:
    curves = {
        key: [h[key] for h in history]
        for key in ("train_loss", "val_loss", "train_commit_loss", "val_commit_loss")
    }
    return {
        "name": spec.model_path.stem,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": spec.run_id,
        "dataset": {
            "path": str(report.root),
            "fingerprint": report.fingerprint(),
            "files": len(report.usable),
            "skipped": len(report.skipped),
            "seconds": round(report.total_seconds, 3),
        },
        "health": best["val_levels"],
        "curves": curves,
        "training": {
            **dataclasses.asdict(settings),
            "best_epoch": best["epoch"],
            "best_val_loss": best["val_loss"],
            "val_mel_error": best["val_mel_error"],
        },
    }
