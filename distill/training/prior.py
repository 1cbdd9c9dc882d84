"""Train a CodePrior on a trained model's codes: `train_prior(spec, emit)`.

Read it top to bottom like the VQ-VAE loop: load the model, scan the dataset (through
the mel cache), split it as the VQ-VAE was split, extract codes once through the frozen
VQ-VAE, then the loop (steps, validation perplexity, memorization check, checkpoint).
The best epoch (lowest validation perplexity) goes into the model's own file, also when
the run stops early: validation has not improved for `patience` epochs, or a stop asked
to keep the best epoch so far (training/lifecycle.py).

What the numbers count: the prior trains on every token of a window, the silence that
pads a short file included (it has to learn to end a sound), but every loss it reports
(train_loss, val_loss, val_perplexity, the step loss) counts only tokens of audible
steps. Padding is trivially predictable and would otherwise make a prior look sure of
itself, and fire the memorization warning, on any set of short one-shots.

Memorization: three checks (training/memorization.py): validation perplexity under a
threshold that rises with the dataset, a gap between training and validation perplexity
that widens, and, after the last epoch, the copy share of clips generated from the kept
weights. Those clips are measured in full (training/generation_report.py: how plausible,
varied and new they are, GenerationMeasured) and the figures go into the model's card.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import torch

from distill.audio.augment import augments, pitch_shifted_mels
from distill.audio.dataset import ScanReport, require_usable, scan_dataset
from distill.audio.windows import split_files
from distill.events import CodesExtracted, PriorEpochMetrics, PriorSaved, PriorStepMetrics
from distill.models.card import ModelCard
from distill.models.card_schema import MAX_MODEL_ELEMENTS, prior_elements, vqvae_elements
from distill.models.config import PriorConfig, VQVAEConfig
from distill.models.library import load_vqvae, save_prior
from distill.models.prior import CodePrior, token_mask
from distill.models.rvqvae import ConvVQVAE
from distill.run_types import Emit, never
from distill.training.generation_report import measure_prior
from distill.training.lifecycle import RunLifecycle, RunResult, training_run
from distill.training.memorization import (
    copy_share_warning,
    gap_warning,
    low_perplexity_warning,
    memorization_threshold,
)
from distill.training.prior_data import (
    CodeBatch,
    CodeCropSampler,
    FileCodes,
    extract_codes,
    extract_take_codes,
    fixed_code_windows,
)
from distill.training.settings import (
    PriorSettings,
    TrainSettings,
    steps_per_epoch,
    training_device,
)

GRAD_CLIP = 1.0


@dataclass(frozen=True)
class PriorSpec:
    """One prior run: the model it learns, the data, how, and where things go."""

    model_path: Path  # read for the VQ-VAE, then rewritten with the prior in it
    dataset: Path
    run_dir: Path  # checkpoints
    cache_dir: Path  # the mel cache
    settings: PriorSettings = field(default_factory=PriorSettings)
    overrides: dict[str, Any] = field(default_factory=dict)  # PriorConfig fields set by the user
    run_id: str = ""
    resume: bool = False


class PreparedCodes(NamedTuple):
    report: ScanReport
    config: PriorConfig
    train: list[FileCodes]
    val: list[FileCodes]
    dataset_changed: bool  # the files differ from those the VQ-VAE trained on
    threshold: float  # memorization_threshold for this dataset
    takes: list[list[FileCodes]]  # each training file's pitch-shifted takes (none: not augmented)


def train_prior(spec: PriorSpec, emit: Emit, should_stop: Callable[[], bool] = never) -> RunResult:
    """Run the whole training; on an error emit RunFailed, then re-raise."""
    with training_run(emit, spec.run_dir, spec.settings.seed) as start:
        # data: the frozen VQ-VAE turns every file into codes, once
        vqvae, model_card = load_vqvae(spec.model_path)
        data = prepare_codes(spec, vqvae, model_card)
        config, settings = data.config, spec.settings
        emit(codes_event(spec, data))
        generator = torch.Generator().manual_seed(settings.seed)
        sampler = CodeCropSampler(data.train, config.context_steps, generator, data.takes)
        val_windows = fixed_code_windows(data.val, config.context_steps)

        # model and optimizer (the codes were extracted on the CPU; the prior trains where asked)
        device = training_device(settings.device)
        prior = CodePrior(config).to(device)
        optimizer = torch.optim.AdamW(
            prior.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        steps = steps_per_epoch(settings, sampler.natural_windows)
        warned: list[dict[str, Any]] = []  # every MemorizationWarning, for the model's card
        run = RunLifecycle(
            emit, start, prior, optimizer, generator,
            config, settings, score_name="best_perplexity", kept={"warned": warned},
        )  # fmt: skip
        if spec.resume:
            run.resume()
        run.begin("prior", str(data.report.root), settings.epochs, steps)

        for epoch in range(run.start_epoch, settings.epochs):
            epoch_started = time.monotonic()
            prior.train()
            audible_loss = audible_tokens = 0.0
            stopped = False
            for step in range(steps):
                if stopped := should_stop():
                    break
                batch = sampler.batch(settings.batch_size).to(device)
                losses = prior.loss(batch.codes)  # (b, n)
                valid = token_mask(batch.valid, config.rvq_levels)
                loss = (losses * valid).sum() / valid.sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(prior.parameters(), GRAD_CLIP)
                optimizer.step()
                audible = token_mask(batch.audible, config.rvq_levels)
                batch_loss, batch_tokens = (
                    (losses.detach() * audible).sum().item(),
                    audible.sum().item(),
                )
                audible_loss, audible_tokens = (
                    audible_loss + batch_loss,
                    audible_tokens + batch_tokens,
                )
                emit(PriorStepMetrics(epoch, step, steps, batch_loss / max(batch_tokens, 1)))
            if stopped:  # keep the best epoch so far, or checkpoint for a resume of this epoch
                if run.keeps_best():
                    break
                return run.cancelled(epoch)

            val_loss = evaluate(prior, val_windows, settings.batch_size)
            val_perplexity = math.exp(val_loss)
            train_loss = audible_loss / max(audible_tokens, 1)
            run.keep_if_best(epoch, val_perplexity)
            metrics = PriorEpochMetrics(
                epoch=epoch,
                epochs=settings.epochs,
                train_loss=train_loss,
                val_loss=val_loss,
                val_perplexity=val_perplexity,
                best_epoch=run.best_epoch,
                seconds=time.monotonic() - epoch_started,
                train_perplexity=math.exp(train_loss),
            )
            run.record(metrics)
            warnings = (
                low_perplexity_warning(epoch, val_perplexity, math.exp(train_loss), data.threshold),
                gap_warning(run.history),
            )
            for warning in warnings:
                if warning is not None:
                    emit(warning)
                    warned.append(warning.to_dict())
            run.checkpoint(epoch + 1)
            if run.out_of_patience(epoch):
                break

        # the best epoch goes into the model's file; then clips generated from that file
        # are measured (how plausible, varied and new), and the card records the figures
        prior.load_state_dict(run.best_state)
        prior.cpu()
        best = run.best()
        card = _prior_card(spec, data, vqvae, settings, run.history, best)
        card["training"]["memorization_warnings"] = warned  # kept should measuring fail
        codes = [f.codes for f in data.train]
        save_prior(spec.model_path, prior, card, codes, model_card.created)
        measured = measure_prior(
            spec.model_path,
            [f.sound.path for f in data.train],
            [f.sound.path for f in data.val],
            best["epoch"],
            settings.generation_clips,
            settings.seed,
        )
        emit(measured)
        copies = copy_share_warning(measured, best["val_perplexity"], math.exp(best["train_loss"]))
        if copies is not None:
            emit(copies)
            warned.append(copies.to_dict())
        card["training"]["generation"] = measured.to_dict()
        save_prior(spec.model_path, prior, card, codes, model_card.created)
        emit(PriorSaved(spec.model_path.stem, str(spec.model_path)))
        return run.completed(spec.model_path)


@torch.no_grad()
def evaluate(prior: CodePrior, windows: CodeBatch, batch_size: int) -> float:
    """Mean cross-entropy (nats) over the audible tokens of every validation window."""
    prior.eval()
    device = next(prior.parameters()).device
    total = count = 0.0
    for start in range(0, len(windows), batch_size):
        batch = windows.slice(start, start + batch_size).to(device)
        audible = token_mask(batch.audible, prior.config.rvq_levels)
        total += (prior.loss(batch.codes) * audible).sum().item()
        count += audible.sum().item()
    return total / max(count, 1.0)


def prepare_codes(spec: PriorSpec, vqvae: ConvVQVAE, card: ModelCard) -> PreparedCodes:
    """Scan with the model's own front-end, split as its VQ-VAE was split, extract codes."""
    spec.cache_dir.mkdir(parents=True, exist_ok=True)
    report = scan_dataset(spec.dataset, vqvae.config.mel, spec.cache_dir)
    require_usable(report)
    training = card.training
    train_files, val_files = split_files(
        report.usable,
        TrainSettings.val_fraction if training.val_fraction is None else training.val_fraction,
        TrainSettings.seed if training.seed is None else training.seed,
    )
    vq = vqvae.config
    config = PriorConfig.from_file_count(
        len(report.usable), vq.rvq_levels, vq.codebook_size, vq.window_steps, **spec.overrides
    )
    require_fits_a_model_file(vq, config)
    fingerprint = card.dataset.fingerprint
    takes: list[list[FileCodes]] = []
    if spec.settings.augment and augments(len(report.usable)):
        mels = pitch_shifted_mels(train_files, vqvae.config.mel)
        takes = extract_take_codes(vqvae, train_files, mels)
    return PreparedCodes(
        report=report,
        config=config,
        train=extract_codes(vqvae, train_files),
        val=extract_codes(vqvae, val_files),
        dataset_changed=fingerprint is not None and fingerprint != report.fingerprint(),
        threshold=memorization_threshold(len(report.usable)),
        takes=takes,
    )


def require_fits_a_model_file(vq: VQVAEConfig, config: PriorConfig) -> None:
    """Refuse, before any training, a prior the model file could not hold: the file's
    schema would refuse it on load, so the run would only fail at its end."""
    size = vqvae_elements(vq.to_dict()) + prior_elements(config.to_dict())
    if size > MAX_MODEL_ELEMENTS:
        raise ValueError(
            f"a prior of hidden size {config.hidden_size} and {config.layers} layers makes a "
            f"model of {size:,} weights, over the {MAX_MODEL_ELEMENTS:,} a model file may "
            "hold: choose a smaller --hidden-size or fewer --layers"
        )


def codes_event(spec: PriorSpec, data: PreparedCodes) -> CodesExtracted:
    return CodesExtracted(
        dataset=str(data.report.root),
        model_path=str(spec.model_path),
        files_used=[str(s.path) for s in data.report.usable],
        files_skipped=list(data.report.skipped),
        train_files=len(data.train),
        val_files=len(data.val),
        train_tokens=sum(f.audible for f in data.train) * data.config.rvq_levels,
        val_tokens=sum(f.audible for f in data.val) * data.config.rvq_levels,
        rvq_levels=data.config.rvq_levels,
        codebook_size=data.config.codebook_size,
        context_steps=data.config.context_steps,
        memorization_threshold=data.threshold,
        dataset_changed=data.dataset_changed,
    )


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _prior_card(
    spec: PriorSpec,
    data: PreparedCodes,
    vqvae: ConvVQVAE,
    settings: PriorSettings,
    history: list[dict[str, Any]],
    best: dict[str, Any],
) -> dict[str, Any]:
    vq = vqvae.config
    root = data.report.root
    seconds_per_step = vq.downsample * vq.mel.hop_length / vq.mel.sample_rate
    median_steps = statistics.median(f.audible for f in data.train)
    return {
        "run_id": spec.run_id,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": {
            "path": str(root),
            "fingerprint": data.report.fingerprint(),
            "files": len(data.report.usable),
            "train_files": len(data.train),
            "val_files": len(data.val),
            "median_seconds": median_steps * seconds_per_step,
            "one_shot": median_steps <= data.config.context_steps,  # generate's default mode
        },
        "training_files": [_relative(f.sound.path, root) for f in data.train],
        "seconds_per_step": seconds_per_step,
        "curves": {
            k: [h[k] for h in history] for k in ("train_loss", "val_loss", "val_perplexity")
        },
        "training": {
            **dataclasses.asdict(settings),
            "best_epoch": best["epoch"],
            "best_val_loss": best["val_loss"],
            "best_val_perplexity": best["val_perplexity"],
            "memorization_threshold": data.threshold,
        },
    }
