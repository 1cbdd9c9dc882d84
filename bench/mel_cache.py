"""The mel cache: a second scan of the same dataset against the first (cold) one.

.venv/bin/python bench/mel_cache.py [--files 60] [DATASET]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from distill.audio.dataset import scan_dataset
from distill.audio.mel_config import MelConfig
from distill.audio.synth import make_demo_set


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", nargs="?", type=Path)
    parser.add_argument("--files", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = args.dataset
        if dataset is None:
            dataset = root / "sounds"
            make_demo_set(dataset, count=args.files, seed=2)
        started = time.perf_counter()
        first = scan_dataset(dataset, MelConfig(), root / "cache")
        cold = time.perf_counter() - started
        started = time.perf_counter()
        second = scan_dataset(dataset, MelConfig(), root / "cache")
        warm = time.perf_counter() - started
    assert second.cache_hits == len(first.usable) + len(first.skipped) - sum(
        "unsupported" in s.reason for s in first.skipped
    )
    print(
        f"mel_cache: {len(first.usable)} usable files, {first.total_seconds:.1f} s of audio, {dataset}"
    )
    print(f"  first scan (decode + resample + mel)  {cold * 1000:9.1f} ms")
    print(
        f"  second scan (cache)                   {warm * 1000:9.1f} ms   speed-up {cold / warm:.1f}x"
    )


if __name__ == "__main__":
    main()
