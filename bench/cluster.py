"""Jobs on a Dask cluster against the local process pool, measured in the same process.

.venv/bin/python bench/cluster.py [--epochs 4] [--events 20000] [--rate 500]

1. Training steps per second in the steady state (epochs after the first), the same
   default-sized run on the same generated set: the local pool (one worker) against a
   distributed.LocalCluster with one worker process. Ratio cluster / local; target >= 0.95.
2. Events per second from a worker to SQLite with one follower: a burst of --events
   events as fast as the worker emits them (the core's "load" run type), local vs cluster.
3. Latency from a worker's emit to the follower, p50 / p99, at --rate events/s: each
   event carries the worker's wall clock (same machine, same clock), local vs cluster.

Both runners see the same core: seq stamping, the recorder's batched commits and the bus
are the same code; what differs is the road from the worker to the core.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from statistics import quantiles

from distill.audio.synth import make_demo_set
from distill.core.cluster_config import ClusterConfig
from distill.core.core import Core, TrainRequest
from distill.events import RunCompleted, RunStarted, StepMetrics
from distill.training.jobs import RUN_TYPES


def emit_timed(job, emit, should_stop) -> str:
    """A run type for the latency figure: `count` step events at `rate`/s, each with the
    worker's time.time() in its `loss` field (a bench-only use of a float field)."""
    count, rate = job["count"], job["rate"]
    emit(RunStarted("timed", "(synthetic)", 1, 0, count, {}))
    started = time.perf_counter()
    for i in range(count):
        while time.perf_counter() - started < i / rate:
            time.sleep(0.0005)
        emit(StepMetrics(0, i, count, loss=time.time(), recon_loss=0.0, commit_loss=0.0))
    emit(RunCompleted(0, 0.0, "", time.perf_counter() - started))
    return "completed"


RUN_TYPES_WITH_TIMED = {**RUN_TYPES, "timed": emit_timed}


async def steps_per_second(core: Core, dataset: Path, epochs: int) -> tuple[float, float]:
    """(steady-state steps/s over epochs 1.., the run's wall seconds)."""
    request = TrainRequest(
        str(dataset), settings={"epochs": epochs, "stage_steps": 0, "preview_every": 1000}
    )
    started = time.perf_counter()
    run_id = await core.submit_training(request)
    steps = [
        event.ts
        async for event in core.follow(run_id)
        if event.kind == "step_metrics" and event.payload["epoch"] >= 1
    ]
    wall = time.perf_counter() - started
    assert len(steps) > 10, "the run made too few steps to measure"
    run = await core.store.run(run_id)
    model = Path(run["model_path"]).stat().st_size
    checkpoint = (Path(run["spec"]["run_dir"]) / "checkpoint.distill").stat().st_size
    print(f"  model file {model / 1024:.0f} KiB, checkpoint {checkpoint / 1024:.0f} KiB")
    return (len(steps) - 1) / (steps[-1] - steps[0]), wall


async def burst(core: Core, events: int) -> float:
    """Events per second from submit to the follower's last event, the whole road."""
    started = time.perf_counter()
    run_id = await core.submit_load(rate=events * 1000.0, seconds=0.001)  # one burst
    received = 0
    async for _ in core.follow(run_id):
        received += 1
    seconds = time.perf_counter() - started
    stored = await core.store.last_seq(run_id)
    assert received == stored, f"the follower saw {received} of {stored} stored events"
    return stored / seconds


async def latency(core: Core, count: int, rate: float) -> tuple[float, float]:
    """(p50, p99) ms from the worker's emit to the follower's receipt."""
    spec = {"dataset": "(synthetic)", "count": count, "rate": rate}
    run_id = await core.submit_run("timed", spec)
    delays = [
        (time.time() - event.payload["loss"]) * 1000
        async for event in core.follow(run_id)
        if event.kind == "step_metrics"
    ]
    q = quantiles(delays, n=100)
    return q[49], q[98]


async def measure(home: Path, dataset: Path, args, cluster: str | None) -> dict[str, float]:
    config = ClusterConfig(cluster) if cluster else None
    async with Core(home, run_types=RUN_TYPES_WITH_TIMED, cluster=config) as core:
        await burst(core, 500)  # warm: the worker is up and has imported torch
        rate, wall = await steps_per_second(core, dataset, args.epochs)
        events = await burst(core, args.events)
        p50, p99 = await latency(core, args.latency_events, args.rate)
    return {"steps": rate, "wall": wall, "events": events, "p50": p50, "p99": p99}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--latency-events", type=int, default=2000)
    args = parser.parse_args()

    from distributed import LocalCluster

    folder = Path(tempfile.mkdtemp(prefix="distill-cluster-bench-"))
    try:
        dataset = folder / "sounds"
        make_demo_set(dataset, count=24)
        shipped = sum(p.stat().st_size for p in dataset.iterdir())
        print(f"dataset: 24 generated sounds, {shipped / 1024:.0f} KiB shipped per attempt")
        local = asyncio.run(measure(folder / "home-local", dataset, args, None))
        with LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster:
            remote = asyncio.run(measure(folder / "home-cluster", dataset, args, cluster.scheduler_address))
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"{'':28}{'local pool':>14}{'cluster':>14}{'ratio':>9}")
    rows = [
        ("training steps/s (steady)", "steps", "{:.2f}"),
        ("  run wall seconds", "wall", "{:.1f}"),
        (f"events/s ({args.events} burst)", "events", "{:,.0f}"),
        (f"emit->follower p50 ms @{args.rate:.0f}/s", "p50", "{:.1f}"),
        (f"emit->follower p99 ms @{args.rate:.0f}/s", "p99", "{:.1f}"),
    ]
    for label, key, fmt in rows:
        ratio = remote[key] / local[key] if local[key] else float("nan")
        print(f"{label:28}{fmt.format(local[key]):>14}{fmt.format(remote[key]):>14}{ratio:>9.3f}")
    print("target: training steps/s ratio (cluster / local) >= 0.95")


if __name__ == "__main__":
    main()
