"""Run every benchmark in turn: `make bench`. Each prints ratios against its own baseline."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = [
    "train_overhead.py",
    "mel_cache.py",
    "real_dataset.py",
    "core_bench.py",
    "core_load.py",
    "prior_bench.py",
    "contention.py",
    "dashboard_latency.py",
    "fanout.py",
    "run_page_load.py",
    "editor_latency.py",
    "bounded.py",
    "cluster.py",
]

for name in BENCHMARKS:
    sys.argv = [name]
    runpy.run_path(str(HERE / name), run_name="__main__")
    print()
