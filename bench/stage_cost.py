"""What the decoder stage costs: a default run with and without it, and its decode speed.

Same dataset, same process, default settings: `train_vqvae` with `stage_steps=0` (no
stage; the model plays through Griffin-Lim) and with the default stage, interleaved over
`--repeats` so drift in machine load hits both; the ratio of their wall times (the
issue's budget is 1.5x). Then a 4 s clip from codes to audio through each model's path,
as a multiple of real time on this machine's threads (the budget is 20x on 2 cores).

    PYTHONPATH=. .venv/bin/python bench/stage_cost.py [DATASET] [--epochs 30] [--repeats 1] [--keep DIR]

DATASET defaults to a generated demo set of 48 sounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from statistics import median

import torch

from distill.audio.synth import make_demo_set
from distill.events import DecoderStageTrained
from distill.models.library import load_vqvae
from distill.models.magnitude import render
from distill.training.settings import TrainSettings
from distill.training.vqvae import TrainSpec, prepare_data, train_vqvae


def timed_run(spec: TrainSpec) -> tuple[float, float]:
    """(wall seconds of the whole run, seconds of its decoder stage)."""
    stage_seconds = 0.0

    def emit(payload) -> None:
        nonlocal stage_seconds
        if isinstance(payload, DecoderStageTrained):
            stage_seconds = payload.seconds

    started = time.perf_counter()
    train_vqvae(spec, emit)
    return time.perf_counter() - started, stage_seconds


def decode_speed(model, seconds: float = 4.0, repeats: int = 3) -> float:
    """Real-time factor of codes -> audio for a clip of `seconds`: the decoder, then the
    path a user hears (the stage and Griffin-Lim, or Griffin-Lim alone)."""
    config = model.config
    frames_per_step = config.mel.hop_length * config.downsample
    steps = -(-round(seconds * config.mel.sample_rate) // frames_per_step)
    codes = torch.randint(config.codebook_size, (steps, config.rvq_levels))
    length = round(seconds * config.mel.sample_rate)
    render(model, model.decode_sound(codes), length=length)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        render(model, model.decode_sound(codes), length=length)
    return seconds * repeats / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", type=Path, nargs="?")
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="copy the two models here (for bench/quality.py)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = args.dataset
        if dataset is None:
            dataset = root / "sounds"
            make_demo_set(dataset, count=48, seed=1)
        settings = TrainSettings(epochs=args.epochs, preview_every=10**6)
        specs = {
            name: TrainSpec(
                dataset=dataset,
                run_dir=root / name,
                model_path=root / f"{name}.distill",
                cache_dir=root / "cache",
                settings=dataclasses.replace(settings, stage_steps=steps),
            )
            for name, steps in (("without", 0), ("with", settings.stage_steps))
        }
        data = prepare_data(specs["with"])  # fill the mel cache so neither run pays for it
        walls: dict[str, list[float]] = {"without": [], "with": []}
        stage = []
        for _ in range(args.repeats):
            for name, spec in specs.items():
                wall, stage_seconds = timed_run(spec)
                walls[name].append(wall)
                if name == "with":
                    stage.append(stage_seconds)
        without, with_stage = median(walls["without"]), median(walls["with"])
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for name, spec in specs.items():
                shutil.copy(spec.model_path, args.keep / f"{dataset.name}-{name}-stage.distill")
        speeds = {
            name: decode_speed(load_vqvae(spec.model_path)[0]) for name, spec in specs.items()
        }
    print(
        f"stage_cost: {dataset} ({len(data.train_files)} training files), {args.epochs} epochs, "
        f"{settings.stage_steps} stage steps, median of {args.repeats}, {torch.get_num_threads()} threads"
    )
    print(f"  default run without the stage  {without:7.1f} s")
    print(
        f"  default run with the stage     {with_stage:7.1f} s   ratio {with_stage / without:.2f}"
        f"  (the stage itself {median(stage):.1f} s)"
    )
    print(f"  decode a 4 s clip, Griffin-Lim      {speeds['without']:6.1f}x real time")
    print(f"  decode a 4 s clip, decoder stage    {speeds['with']:6.1f}x real time")


if __name__ == "__main__":
    main()
