"""The event core: bus fan-out, recorder batching, and training through the core.

.venv/bin/python bench/core_bench.py [--events 200000] [--epochs 6]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from statistics import quantiles

from distill.core.bus import EventBus
from distill.core.core import Core
from distill.core.store import Store
from distill.events import CodebookWarning, Event, Payload, StepMetrics
from distill.training.jobs import RUN_TYPES
from distill.training.specs import TrainRequest


def make_events(n: int, payload: Payload, run_id: str = "r") -> list[Event]:
    data = payload.to_dict()
    return [Event(run_id, i + 1, payload.kind, data, 0.0) for i in range(n)]


STEP = StepMetrics(epoch=0, step=0, steps_per_epoch=8, loss=1.0, recon_loss=1.0, commit_loss=0.0)
# Step metrics may be coalesced for a slow subscriber; warnings are delivered exactly once,
# so the bus is measured on the kind it can never drop.
WARNING = CodebookWarning(
    epoch=1, level=1, utilization=0.1, threshold=0.3, message="level 1 uses 6 of 64 codes"
)


async def bus_bench(n: int) -> None:
    bus = EventBus(queue_size=n + 1)
    subs = [bus.subscribe() for _ in range(3)]
    events = make_events(n, WARNING)
    latencies = []
    started = time.perf_counter()
    for event in events:
        t = time.perf_counter_ns()
        bus.publish(event)
        latencies.append(time.perf_counter_ns() - t)
    seconds = time.perf_counter() - started
    assert all(s.pending == n for s in subs)
    q = quantiles(latencies, n=100)
    print(
        f"bus: {n} events, 3 subscribers: {n / seconds:,.0f} events/s published; "
        f"publish latency p50 {q[49] / 1000:.1f} us, p99 {q[98] / 1000:.1f} us"
    )


async def recorder_bench(n: int, folder: Path) -> None:
    async def timed(batch: int, name: str) -> float:
        store = await Store.open(folder / f"{name}.sqlite")
        await store.create_run("r", "vqvae", "/data", {}, None)
        events = make_events(n, STEP)
        started = time.perf_counter()
        for i in range(0, n, batch):
            await store.append(events[i : i + batch])
        seconds = time.perf_counter() - started
        await store.close()
        return n / seconds

    single = await timed(1, "single")
    batched = await timed(1000, "batched")
    print(
        f"recorder: {n} events into SQLite: batched (1000) {batched:,.0f} events/s, one "
        f"transaction per event {single:,.0f} events/s, ratio {batched / single:.1f}x"
    )


async def end_to_end(epochs: int, folder: Path) -> None:
    """Two figures: the whole run (spawn and imports included), and the steady state.

    The steady state is the steps between the first and the last epoch_metrics event,
    timed as each event arrives (at the direct emit, or at the follower): a one-off
    worker start-up of a few seconds says nothing about the per-step cost of the core.
    """
    from distill.audio.synth import make_demo_set
    from distill.training.vqvae import TrainSettings, TrainSpec, train_vqvae

    make_demo_set(folder / "sounds", count=24, seed=3)
    settings = {"epochs": epochs, "preview_every": 10**6}
    direct_spec = TrainSpec(
        dataset=folder / "sounds", run_dir=folder / "direct", model_path=folder / "d.distill",
        cache_dir=folder / "home" / "cache" / "mel", settings=TrainSettings(**settings),
    )  # fmt: skip
    train_vqvae(direct_spec, lambda e: None)  # warm the mel cache and the allocator

    direct = Timeline()
    started = time.perf_counter()
    train_vqvae(direct_spec, lambda payload: direct.saw(payload.kind))
    direct_total = time.perf_counter() - started

    core_line = Timeline()
    async with Core(folder / "home", run_types=RUN_TYPES) as core:
        started = time.perf_counter()
        run_id = await core.submit("vqvae", TrainRequest(str(folder / "sounds"), settings=settings))
        async for event in core.follow(run_id):  # one follower
            core_line.saw(event.kind)
        core_total = time.perf_counter() - started

    steps = direct.steps
    print(
        f"end to end, whole run of {steps} steps: direct {steps / direct_total:.2f} steps/s, "
        f"through the core (spawn + worker + bus + recorder + follower) "
        f"{core_line.steps / core_total:.2f} steps/s, ratio "
        f"{(core_line.steps / core_total) / (steps / direct_total):.3f}"
    )
    print(
        f"end to end, steady state (epoch 1 to {epochs - 1}): direct "
        f"{direct.steady_rate():.2f} steps/s, through the core {core_line.steady_rate():.2f} "
        f"steps/s, ratio {core_line.steady_rate() / direct.steady_rate():.3f}"
    )


class Timeline:
    """When each step and epoch event was seen, to time the steady state."""

    def __init__(self) -> None:
        self.steps = 0
        self.epoch_ends: list[tuple[float, int]] = []  # (when, steps so far)

    def saw(self, kind: str) -> None:
        if kind == "step_metrics":
            self.steps += 1
        elif kind == "epoch_metrics":
            self.epoch_ends.append((time.perf_counter(), self.steps))

    def steady_rate(self) -> float:
        (t0, s0), (t1, s1) = self.epoch_ends[0], self.epoch_ends[-1]
        return (s1 - s0) / (t1 - t0)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await bus_bench(args.events)
        await recorder_bench(20_000, Path(tmp))
        await end_to_end(args.epochs, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
