"""The sealed model-file fuzz at scale: mutants past the checksum, each refused cleanly or
loaded and run (the suite runs a few hundred: tests/test_model_card_fuzz.py).

Prints the count of each outcome and of each kind of mutant, the rate, and the peak
resident memory, which must stay under what the configs may imply (MAX_MODEL_ELEMENTS
float32 numbers) over the process's own size after the first mutant. Any other exception
stops the run and names the mutant.

.venv/bin/python bench/model_fuzz.py [--mutants 50000] [--seed N]
"""

from __future__ import annotations

import argparse
import collections
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the suite's mutants

import torch  # noqa: E402
from card_fuzz import SEED, base_model, mutants, outcome  # noqa: E402
from loguru import logger  # noqa: E402

from distill.models.card_schema import MAX_MODEL_ELEMENTS  # noqa: E402


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mutants", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models: threads only contend
    logger.disable("vector_quantize_pytorch")  # its k-means warns of tiny batches, by design
    shm = Path("/dev/shm")  # each import fsyncs: in memory, that costs nothing
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        root = Path(tmp)
        good = base_model(root).read_bytes()
        path, home = root / "mutant.distill", root / "home"
        outcomes: collections.Counter[str] = collections.Counter()
        kinds: collections.Counter[tuple[str, str]] = collections.Counter()
        started, baseline = time.perf_counter(), None
        for index, mutant in enumerate(mutants(random.Random(args.seed), good, args.mutants)):
            path.write_bytes(mutant.data)
            try:
                result = outcome(path, home)
            except Exception as error:
                sys.exit(f"mutant {index} ({mutant.description}): {type(error).__name__}: {error}")
            outcomes[result] += 1
            kinds[mutant.kind, result] += 1
            baseline = baseline or peak_rss_mib()
        wall = time.perf_counter() - started
    cap_mib = MAX_MODEL_ELEMENTS * 4 / 1024**2
    grown = peak_rss_mib() - (baseline or 0.0)
    print(
        f"model_fuzz: {args.mutants} sealed mutants of a tiny model with a prior, seed {args.seed:#x}"
    )
    for name, count in sorted(outcomes.items()):
        print(f"  {name:<10} {count:7d}  {count / args.mutants:6.1%}")
    for kind in sorted({k for k, _ in kinds}):
        counts = ", ".join(f"{kinds[kind, r]} {r}" for r in sorted(outcomes) if kinds[kind, r])
        print(f"    {kind:<10} {counts}")
    print(f"  rate       {args.mutants / wall:7.0f} mutants/s ({wall:.1f} s)")
    print(f"  peak RSS   {peak_rss_mib():7.0f} MiB, {grown:.0f} MiB over the first mutant's "
          f"(the cap: {cap_mib:.0f} MiB of float32)")  # fmt: skip
    if grown > cap_mib:
        sys.exit("memory grew past the cap")


if __name__ == "__main__":
    main()
