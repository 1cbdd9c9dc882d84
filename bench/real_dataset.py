"""A default-config training run on a real sound collection, as a user would see it.

Prints wall time per epoch and the final per-level codebook health. Defaults to Debian's
sound-theme-freedesktop (35 OGG files, mixed rates); `make bench` installs it.

    .venv/bin/python bench/real_dataset.py [DATASET] [--epochs 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from statistics import median

from distill.events import DatasetScanned, EpochMetrics, RunCompleted
from distill.training.vqvae import TrainSettings, TrainSpec, train_vqvae

FREEDESKTOP = Path("/usr/share/sounds/freedesktop/stereo")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", nargs="?", type=Path, default=FREEDESKTOP)
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    args = parser.parse_args()
    if not args.dataset.is_dir():
        raise SystemExit(f"{args.dataset} missing: apt-get install sound-theme-freedesktop")
    events: list = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = TrainSpec(
            dataset=args.dataset,
            run_dir=root / "run",
            model_path=root / "model.distill",
            cache_dir=root / "cache",
            settings=TrainSettings(epochs=args.epochs),
        )
        started = time.perf_counter()
        train_vqvae(spec, events.append)
        total = time.perf_counter() - started
    scan = next(e for e in events if isinstance(e, DatasetScanned))
    epochs = [e for e in events if isinstance(e, EpochMetrics)]
    done = next(e for e in events if isinstance(e, RunCompleted))
    print(
        f"real_dataset: {args.dataset}: {len(scan.files_used)} files, {scan.total_seconds:.1f} s, "
        f"{len(scan.files_skipped)} skipped; codebook {scan.codebook_size} x {scan.rvq_levels} levels"
    )
    print(
        f"  {len(epochs)} epochs in {total:.1f} s; per epoch median {median(e.seconds for e in epochs):.2f} s"
        f" (first {epochs[0].seconds:.2f} s)"
    )
    print(f"  best epoch {done.best_epoch + 1}: validation loss {done.best_val_loss:.4f}")
    for health in epochs[-1].val_levels:
        print(
            f"  level {health.level}: utilization {health.utilization:.0%}, perplexity "
            f"{health.perplexity:.1f}, dead {health.dead_codes}, error reduction {health.error_reduction:+.4f}"
        )


if __name__ == "__main__":
    main()
