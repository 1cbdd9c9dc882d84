"""How good and how new a model's generated sounds are: `bench/generation.py MODEL DATASET`.

Generates --clips clips (seeds --seed, --seed + 1, ...) through the product's own path
(inference/generate.py generate_clips: the prior's default mode, one-shot trimming for a
one-shot prior; at most 4 s, or 1.25 times the longest real sound when shorter, as the
measure after training does: generation_report.clip_seconds), splits DATASET into training and held-out files exactly as the model's
training did (its card's val_fraction and seed), and prints one table: each figure of
distill/audio/generation_figures.py for the clips, with its bootstrap interval, beside
the "copies" anchor (the training sounds offered as if generated) and the "noise" anchor
(decaying noise bursts of the real sounds' durations), then the KAD as a share of the
way from copies to noise and the share of clips that start on their sound (the real
set's own share in the copies column).

How to read it: KAD near the split floor and coverage near the copies anchor's, with a
copy share near 0 and novelty near 1.0, is a model that makes new sounds like the set's.
Compare two models only where their intervals do not overlap.

`--variation` measures variations of the training sounds instead (generate --variation);
`--temperature` and `--top-p` change how codes are drawn, to compare settings.

`--render DIR` writes the first few clips (and two training sounds, for comparison) as
WAV and as 64-band log-mel PNGs (the embedding's own front-end).

    PYTHONPATH=. .venv/bin/python bench/generation.py MODEL DATASET [--clips 100]
        [--render DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distill.audio.dataset import scan_dataset
from distill.audio.decode import decode_audio, resample, write_wav
from distill.audio.embedding import EMBEDDING_CONFIG
from distill.audio.generation_figures import COPY_RATIO, K_NEIGHBOURS
from distill.audio.images import write_mel_png
from distill.audio.mel import MelSpectrogram
from distill.audio.windows import split_files
from distill.models.library import read_card, resolve_model
from distill.paths import mel_cache_dir
from distill.training.generation_report import (
    REAL_RATE,
    GenerationReport,
    clip_seconds,
    generate_set,
    load_real,
    report_generation,
)
from distill.training.settings import TrainSettings

RENDERED_CLIPS = 6
RENDERED_REAL = 2
RENDER_SCALE = 4


def _figure(value: float, digits: int = 2) -> str:
    return "-" if not math.isfinite(value) else f"{value:.{digits}f}"


def _with_interval(value: float, low: float, high: float, digits: int) -> str:
    if not math.isfinite(low):
        return _figure(value, digits)
    return f"{_figure(value, digits)} ({_figure(low, digits)} to {_figure(high, digits)})"


def print_table(report: GenerationReport) -> None:
    g, c, n = report.generated, report.copies, report.noise
    rows: list[tuple[str, str, float, float]] = [
        ("KAD x100 (0 = same as the set)",
         _with_interval(g.kad, g.kad_low, g.kad_high, 2), c.kad, n.kad),
        (f"precision, k={K_NEIGHBOURS} (plausible)", _figure(g.precision), c.precision, n.precision),
        (f"coverage, k={K_NEIGHBOURS} (varied)",
         _with_interval(g.coverage, g.coverage_low, g.coverage_high, 2), c.coverage, n.coverage),
        ("copy share (new)", _figure(g.copy_share), c.copy_share, n.copy_share),
        ("novelty (1 = as new as unseen)", _figure(g.novelty), c.novelty, n.novelty),
        ("silent share", _figure(g.silent_share), c.silent_share, n.silent_share),
        ("starts on its sound", _figure(report.onset_generated), report.onset_real,
         report.onset_noise),
    ]  # fmt: skip
    print(f"{'figure':<34}{'generated (5-95%)':<28}{'copies':>9}{'noise':>9}")
    for name, generated, copies, noise in rows:
        print(f"{name:<34}{generated:<28}{_figure(copies):>9}{_figure(noise):>9}")
    print(
        f"KAD: {_figure(report.kad_way, 0)}% of the way from copies to noise; "
        f"split floor (two halves of the real set) {_figure(report.split_floor)}"
    )


def _render(folder: Path, clips: list[Path], real: list[np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    front = MelSpectrogram(EMBEDDING_CONFIG)
    low = math.log(EMBEDDING_CONFIG.log_floor)

    def picture(path: Path, audio: np.ndarray) -> None:
        with torch.no_grad():
            mel = front(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)))
        write_mel_png(path, mel.numpy(), low, max(float(mel.max()), low + 1), RENDER_SCALE)

    for clip in clips[:RENDERED_CLIPS]:
        audio, rate = decode_audio(clip)
        shutil.copy(clip, folder / clip.name)
        picture(folder / f"{clip.stem}.png", resample(audio, rate, REAL_RATE))
    for index, audio in enumerate(real[:RENDERED_REAL]):
        write_wav(folder / f"real{index + 1:02d}.wav", audio, REAL_RATE)
        picture(folder / f"real{index + 1:02d}.png", audio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a .distill file or a model name in the library")
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--render", type=Path, help="write WAVs and PNGs of a few clips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variation", action="store_true", help="variations of the training sounds"
    )
    parser.add_argument("--temperature", type=float, help="default: generate's own")
    parser.add_argument("--top-p", type=float, help="default: generate's own")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    path = resolve_model(args.model)
    card = read_card(path)
    if card.prior is None:
        sys.exit(f"{path.name} has no prior: train one with `distill train-prior` first")
    training = card.training  # the split the model was trained with (defaults: older cards)
    report = scan_dataset(args.dataset, card.config.mel, mel_cache_dir())
    train_files, held_files = split_files(
        report.usable,
        TrainSettings.val_fraction if training.val_fraction is None else training.val_fraction,
        TrainSettings.seed if training.seed is None else training.seed,
    )
    train = load_real([s.path for s in train_files])
    held_out = load_real([s.path for s in held_files])
    seconds = clip_seconds([*train, *held_out])
    prior = card.prior
    print(
        f"model {path.stem}: prior kept epoch {prior.training.best_epoch + 1} of "
        f"{prior.training.epochs}, {'one-shot' if prior.dataset.one_shot else 'continuous'} "
        f"clips of at most {seconds:.2f} s; dataset {args.dataset} ({len(train)} training, "
        f"{len(held_out)} held-out files); {args.clips} clips, seeds "
        f"{args.seed}..{args.seed + args.clips - 1}"
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="distill-bench-") as folder:
        options = {
            name: value
            for name, value in (
                ("variation", args.variation),
                ("temperature", args.temperature),
                ("top_p", args.top_p),
            )
            if value not in (None, False)
        }
        generated = generate_set(path, Path(folder), args.clips, args.seed, seconds, **options)
        generated_seconds = time.perf_counter() - started
        measuring = time.perf_counter()
        figures = report_generation(
            train, held_out, generated.clips, generated.sample_rate, generated.silent, args.seed
        )
        measured_seconds = time.perf_counter() - measuring
        if args.render:
            _render(args.render, generated.paths, train)
    print_table(figures)
    print(
        f"a copy: a clip within {COPY_RATIO} of the distance from its nearest training "
        "sound to that sound's nearest other"
    )
    print(
        f"time: generating {args.clips} clips {generated_seconds:.1f} s, measuring "
        f"{measured_seconds:.1f} s ({torch.get_num_threads()} threads)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
