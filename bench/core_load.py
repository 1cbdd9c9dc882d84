"""The core under load: a worker emitting 10,000 events/s for a minute, four followers.

    .venv/bin/python bench/core_load.py [--rate 10000] [--seconds 60]

Prints the event loop's lag (a 10 ms ticker's lateness) under load against the same
ticker on an idle loop, the process's resident memory over the run, and checks SQLite
for gaps and duplicates. One follower is slow on purpose, so it falls behind and resyncs.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path
from statistics import quantiles

from distill.core.core import Core
from distill.loadgen import LOAD, LoadRequest
from distill.paths import database_path

TICK = 0.010


class LagProbe:
    """How late a 10 ms ticker wakes up: the loop's lag, as a follower would feel it."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.rss: list[tuple[float, int]] = []  # (seconds since start, bytes)
        self._task: asyncio.Task | None = None

    async def _tick(self) -> None:
        started = time.perf_counter()
        while True:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            self.lags.append(time.perf_counter() - before - TICK)
            if len(self.lags) % 100 == 0:
                self.rss.append((time.perf_counter() - started, resident_bytes()))

    def __enter__(self) -> LagProbe:
        self._task = asyncio.ensure_future(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        self._task.cancel()

    def summary(self) -> tuple[float, float, float]:
        q = quantiles(self.lags, n=100)
        return q[49] * 1000, q[98] * 1000, max(self.lags) * 1000


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


async def follow(core: Core, run_id: str, slow: bool) -> int:
    seen = 0
    async for _event in core.follow(run_id):
        seen += 1
        if slow and seen % 20 == 0:
            await asyncio.sleep(0.005)
    return seen


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()

    with LagProbe() as idle:
        await asyncio.sleep(3)
    idle_p50, idle_p99, idle_max = idle.summary()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        async with Core(home, run_types={"load": LOAD}) as core:
            with LagProbe() as loaded:
                started = time.perf_counter()
                run_id = await core.submit("load", LoadRequest(args.rate, args.seconds))
                counts = await asyncio.gather(
                    *(follow(core, run_id, slow=i == 3) for i in range(4))
                )
                seconds = time.perf_counter() - started
        with sqlite3.connect(database_path(home)) as db:
            seqs = [s for (s,) in db.execute(
                "SELECT seq FROM events WHERE run_id = ? ORDER BY seq", (run_id,))]  # fmt: skip
    p50, p99, worst = loaded.summary()
    gapless = seqs == list(range(1, len(seqs) + 1))
    print(f"core_load: {len(seqs):,} events in {seconds:.1f} s ({len(seqs) / seconds:,.0f}/s "
          f"recorded), SQLite gapless and unique: {gapless}; followers saw {counts} "
          f"(the last is slow: step metrics coalesced)")  # fmt: skip
    print(
        f"  loop lag under load p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {worst:.1f} ms; "
        f"idle p50 {idle_p50:.2f} ms, p99 {idle_p99:.2f} ms; p99 ratio {p99 / idle_p99:.1f}x"
    )
    first = (
        next(b for t, b in loaded.rss if t >= 10) if loaded.rss[-1][0] >= 10 else loaded.rss[0][1]
    )
    last = loaded.rss[-1][1]
    print(
        f"  resident memory at 10 s {first / 2**20:.1f} MiB, at the end {last / 2**20:.1f} MiB "
        f"(ratio {last / first:.3f})"
    )


if __name__ == "__main__":
    asyncio.run(main())
