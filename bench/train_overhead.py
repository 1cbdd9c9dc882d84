"""Steps per second of `train_vqvae` (events on) against a bare PyTorch loop.

Same model config, same data, same batch size, same process. Both are timed over their
step phase only: from the end of an epoch's first step to the end of its last, so
per-epoch validation, checkpoints and previews (work the bare loop does not do) are
reported separately as the end-to-end figure. Events are serialised to JSON as a worker
would before sending them, so their cost is counted.

    .venv/bin/python bench/train_overhead.py [--epochs 4] [--files 24]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from statistics import median

import torch

from distill.audio.synth import make_demo_set
from distill.audio.windows import CropSampler
from distill.events import StepMetrics
from distill.models.rvqvae import ConvVQVAE, multiscale_mel_loss
from distill.training.vqvae import (
    TrainSettings,
    TrainSpec,
    initialise_codebooks,
    prepare_data,
    train_vqvae,
)


def step_rate(marks: list[list[float]]) -> float:
    """Steps per second from per-epoch lists of step-end times (first step excluded)."""
    steps = sum(len(m) - 1 for m in marks)
    seconds = sum(m[-1] - m[0] for m in marks)
    return steps / seconds


def timed_train_vqvae(spec: TrainSpec) -> tuple[float, float, int]:
    marks: dict[int, list[float]] = {}
    started = time.perf_counter()

    def emit(payload) -> None:
        json.dumps({"kind": payload.kind, "payload": payload.to_dict()})
        if isinstance(payload, StepMetrics):
            marks.setdefault(payload.epoch, []).append(time.perf_counter())

    train_vqvae(spec, emit)
    total = time.perf_counter() - started
    steps = sum(len(m) for m in marks.values())
    return step_rate(list(marks.values())), steps / total, steps


def bare_loop(spec: TrainSpec, epochs: int) -> float:
    """The textbook loop over the same model, sampler and loss; no events, no evaluation."""
    data = prepare_data(spec)
    config, settings = data.config, spec.settings
    torch.manual_seed(settings.seed)
    mels = [torch.from_numpy(s.load_mel()) for s in data.train_files]
    pad = math.log(config.mel.log_floor)
    sampler = CropSampler(mels, config.window_frames, pad, torch.Generator().manual_seed(0))
    steps = max(
        settings.min_steps_per_epoch, math.ceil(sampler.natural_windows / settings.batch_size)
    )
    model = ConvVQVAE(config)
    all_frames = torch.cat([m.flatten() for m in mels])
    model.set_normalization(all_frames.mean().item(), all_frames.std().item())
    initialise_codebooks(model, mels, config, pad)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    marks = []
    for _ in range(epochs):
        model.train()
        epoch_marks = []
        for _ in range(steps):
            batch = sampler.batch(settings.batch_size)
            out = model(batch.mels)
            loss = (
                multiscale_mel_loss(out.reconstruction, batch.mels, batch.audible)
                + config.commitment_weight * out.commit_loss
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_marks.append(time.perf_counter())
        marks.append(epoch_marks)
    return step_rate(marks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--files", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_demo_set(root / "sounds", count=args.files, seed=1)
        spec = TrainSpec(
            dataset=root / "sounds",
            run_dir=root / "run",
            model_path=root / "model.distill",
            cache_dir=root / "cache",
            settings=TrainSettings(epochs=args.epochs, preview_every=10**6),
        )
        prepare_data(spec)  # fill the mel cache so neither side pays for decoding
        bare_loop(spec, 1)  # warm-up: allocator, kernels
        bares, rates, ends = [], [], []
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits both
            bares.append(bare_loop(spec, args.epochs))
            events_rate, end_to_end, steps = timed_train_vqvae(spec)
            rates.append(events_rate)
            ends.append(end_to_end)
        bare, events_rate, end_to_end = median(bares), median(rates), median(ends)
    print(
        f"train_overhead: median of {args.repeats}, {steps} steps each, batch {spec.settings.batch_size}, {torch.get_num_threads()} threads"
    )
    print(f"  bare loop                      {bare:8.2f} steps/s")
    print(
        f"  train_vqvae, step phase        {events_rate:8.2f} steps/s   ratio {events_rate / bare:.3f}"
    )
    print(
        f"  train_vqvae, end to end        {end_to_end:8.2f} steps/s   ratio {end_to_end / bare:.3f}"
        "  (includes validation, health, checkpoints, k-means)"
    )


if __name__ == "__main__":
    main()
