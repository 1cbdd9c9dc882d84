"""Train a model's decoder stage: `train_stage(model, train_files, val_files, ...)`.

Runs after the VQ-VAE's epochs, on its kept (best) weights, which stay frozen: the
stage learns to turn the model's *own* reconstruction of each training file into that
file's true STFT magnitude, so it learns both what 80 mel bands cannot say (the detail
inside a band) and some of the model's habitual errors. The loss is an L1 on the log
magnitude (every bin counts, quiet ones too) plus the spectral convergence of the
linear magnitude (the loud bins, which a listener hears first), over each file's own
frames. It is judged every STAGE_EVAL_EVERY steps on the held-out files and the best
weights are kept (by the same loss, over the held-out files whole), the way the VQ-VAE
keeps its best epoch: a stage that does not help sounds it never heard stays the
pseudo-inverse it started as.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from distill.audio.augment import pitch_shift
from distill.audio.dataset import SoundFile, load_prepared
from distill.audio.mel import MelSpectrogram
from distill.audio.metrics import magnitude_convergence
from distill.events import DecoderStageProgress, DecoderStageTrained, Payload
from distill.models.magnitude import MAX_LOG_MAGNITUDE
from distill.models.rvqvae import ConvVQVAE
from distill.training.lifecycle import copy_state

STAGE_CROP_FRAMES = 64  # frames per training crop (0.74 s): several hits' worth of context
STAGE_BATCH = 16
STAGE_LEARNING_RATE = 1e-3
STAGE_EVAL_EVERY = 200  # steps between held-out checks (the best weights are kept)
STAGE_PROGRESS_EVERY = 50  # steps between progress events
MAX_STAGE_FRAMES = 40_000  # frames of audio held for the stage (~8 min): bounds its memory
MAX_FRAMES_PER_FILE = 2_048  # a long file gives its first 24 s, so short ones still count


@dataclass(frozen=True)
class StagePair:
    """One file: the frozen model's reconstruction and the true magnitude, same frames."""

    reconstruction: Tensor  # (m, t) log-mel
    magnitude: Tensor  # (bins, t) linear


def stage_pairs(
    model: ConvVQVAE,
    files: list[SoundFile],
    most_frames: int = MAX_STAGE_FRAMES,
    shifts: Sequence[int] = (),
) -> list[StagePair]:
    """Each file through the frozen model, whole (never a padded window), and each of its
    takes pitch-shifted by `shifts` semitones (audio/augment.py: more pitches than the
    set has, as the VQ-VAE saw), until `most_frames` frames are held."""
    config = model.config.mel
    front = MelSpectrogram(config)
    device = next(model.parameters()).device
    pairs, held = [], 0
    for sound in files:
        if held >= most_frames:
            break
        audio, _ = load_prepared(sound.path, config.sample_rate)
        if audio is None:  # changed since the scan: the stage learns from the others
            continue
        samples = MAX_FRAMES_PER_FILE * config.hop_length
        for take in [audio, *(pitch_shift(audio, s) for s in shifts)]:
            waveform = torch.from_numpy(take[:samples])
            with torch.no_grad():
                true_mel = front(waveform)
                frames = true_mel.shape[-1]
                codes = model.encode_sound(true_mel.to(device))
                reconstruction = model.decode_sound(codes, frames)
            pairs.append(StagePair(reconstruction, front.magnitude(waveform).to(device)))
            held += frames
    return pairs


def _crops(pairs: list[StagePair], generator: torch.Generator, floor: float):
    """A batch of aligned crops and their audible mask (b, t): a file shorter than a crop
    is padded with silence that the loss does not count."""
    inputs, targets, masks = [], [], []
    for _ in range(STAGE_BATCH):
        pair = pairs[int(torch.randint(len(pairs), (), generator=generator))]
        frames = pair.reconstruction.shape[-1]
        start = int(torch.randint(max(frames - STAGE_CROP_FRAMES, 0) + 1, (), generator=generator))
        used = min(STAGE_CROP_FRAMES, frames - start)
        mel = pair.reconstruction.new_full((pair.reconstruction.shape[0], STAGE_CROP_FRAMES), floor)
        mel[:, :used] = pair.reconstruction[:, start : start + used]
        magnitude = pair.magnitude.new_zeros((pair.magnitude.shape[0], STAGE_CROP_FRAMES))
        magnitude[:, :used] = pair.magnitude[:, start : start + used]
        mask = pair.magnitude.new_zeros(STAGE_CROP_FRAMES)
        mask[:used] = 1
        inputs.append(mel)
        targets.append(magnitude)
        masks.append(mask)
    return torch.stack(inputs), torch.stack(targets), torch.stack(masks)


def stage_loss(log_magnitude: Tensor, target: Tensor, audible: Tensor, log_floor: float) -> Tensor:
    """L1 of the log magnitude plus the spectral convergence of the linear one, over
    audible frames; (b, bins, t), (b, bins, t), (b, t)."""
    weight = audible.unsqueeze(1)
    log_target = torch.log(target.clamp(min=log_floor))
    l1 = ((log_magnitude - log_target).abs() * weight).sum() / (
        weight.sum() * log_magnitude.shape[1]
    ).clamp(min=1.0)
    linear = torch.exp(log_magnitude.clamp(max=MAX_LOG_MAGNITUDE)) * weight
    truth = target * weight
    convergence = torch.linalg.norm(truth - linear) / torch.linalg.norm(truth).clamp(min=1e-6)
    return l1 + convergence


class HeldOut(NamedTuple):
    loss: float  # mean over files of the stage's loss: what picks the weights kept
    convergence: float  # median over files of the magnitude's spectral convergence


@torch.no_grad()
def held_out(model: ConvVQVAE, pairs: list[StagePair], *, through_stage: bool) -> HeldOut:
    """How close the magnitude the model gives (through its stage, or the pseudo-inverse
    baseline) comes to the true one, file by file, whole."""
    assert model.stage is not None
    losses, convergences = [], []
    log_floor = model.config.mel.log_floor
    for pair in pairs:
        mel, target = pair.reconstruction.unsqueeze(0), pair.magnitude.unsqueeze(0)
        if through_stage:
            log_magnitude = model.stage(mel, model.mel_mean, model.mel_std)
        else:
            log_magnitude = model.stage.baseline(mel)
        audible = target.new_ones(1, target.shape[-1])
        losses.append(float(stage_loss(log_magnitude, target, audible, log_floor)))
        estimate = torch.exp(log_magnitude.clamp(max=MAX_LOG_MAGNITUDE))
        convergences.append(magnitude_convergence(target, estimate))
    if not pairs:
        return HeldOut(math.nan, math.nan)
    return HeldOut(statistics.fmean(losses), statistics.median(convergences))


def train_stage(
    model: ConvVQVAE,
    train_files: list[SoundFile],
    val_files: list[SoundFile],
    steps: int,
    seed: int,
    emit: Callable[[Payload], None],
    should_stop: Callable[[], bool],
    shifts: Sequence[int] = (),
    keeps_best: Callable[[], bool] = lambda: False,
) -> DecoderStageTrained | None:
    """Train `model.stage` in place (the rest of the model is left as it is); None when
    `should_stop` stopped it, unless `keeps_best()` says the stop keeps the best weights
    so far (then it ends as it would after its last step, having trained fewer).
    `shifts`: the training files' pitch-shifted takes to learn from too (semitones)."""
    assert model.stage is not None
    started = time.monotonic()
    model.eval()
    train_pairs = stage_pairs(model, train_files, shifts=shifts)
    val_pairs = stage_pairs(model, val_files, MAX_STAGE_FRAMES // 4) or train_pairs[:4]
    stage = model.stage
    floor = math.log(model.config.mel.log_floor)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(stage.parameters(), lr=STAGE_LEARNING_RATE)
    baseline = held_out(model, val_pairs, through_stage=False)
    best, best_state = baseline, copy_state(stage)  # the stage starts as the baseline
    loss_sum, loss_count = 0.0, 0
    done = 0
    for step in range(steps):
        if should_stop():
            if keeps_best():
                break
            return None
        stage.train()
        mels, targets, audible = _crops(train_pairs, generator, floor)
        log_magnitude = stage(mels, model.mel_mean, model.mel_std)
        loss = stage_loss(log_magnitude, targets, audible, model.config.mel.log_floor)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum, loss_count = loss_sum + loss.item(), loss_count + 1
        done = step + 1
        if done % STAGE_PROGRESS_EVERY == 0 or done == steps:
            emit(
                DecoderStageProgress(done, steps, loss_sum / loss_count, time.monotonic() - started)
            )
        if done % STAGE_EVAL_EVERY == 0 or done == steps or should_stop():
            stage.eval()  # (also the last step before a stop that keeps the best)
            figures = held_out(model, val_pairs, through_stage=True)
            if figures.loss < best.loss:
                best, best_state = figures, copy_state(stage)
    stage.load_state_dict(best_state)
    stage.eval()
    trained = DecoderStageTrained(
        steps=done,
        train_loss=loss_sum / max(loss_count, 1),
        val_loss_baseline=baseline.loss,
        val_loss=best.loss,
        val_convergence_baseline=baseline.convergence,
        val_convergence=best.convergence,
        seconds=time.monotonic() - started,
    )
    emit(trained)
    return trained
