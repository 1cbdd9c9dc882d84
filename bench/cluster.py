"""Jobs on a Dask cluster against the local process pool, measured in the same process.

.venv/bin/python bench/cluster.py [--epochs 4] [--repeats 2] [--events 20000] [--rate 500]

1. Training steps per second in the steady state (epochs after the first), the same
   default-sized run on the same generated set: the local pool (one worker) against a
   distributed.LocalCluster with one worker process, in Dask's default worker environment
   and in a plain one (see the README). Ratio cluster / local; target >= 0.95.
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
from dataclasses import dataclass
from pathlib import Path
from statistics import quantiles
from typing import Any, ClassVar

from distill.audio.synth import make_demo_set
from distill.core.cluster_config import ClusterConfig
from distill.core.core import Core
from distill.events import RunCompleted, RunStarted, StepMetrics
from distill.loadgen import LOAD, LoadRequest
from distill.run_types import PathRole, Plan, RunType
from distill.training.jobs import RUN_TYPES
from distill.training.specs import TrainRequest


@dataclass(frozen=True)
class Timed:
    """The latency figure's run: `count` step events at `rate`/s (request and job)."""

    count: int
    rate: float

    paths: ClassVar[dict[str, PathRole]] = {}
    subject = "(synthetic)"

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "rate": self.rate}

    @classmethod
    def from_dict(cls, data) -> Timed:
        return cls(data["count"], data["rate"])


def emit_timed(job: Timed, context, emit, should_stop) -> str:
    """Each step event carries the worker's time.time() in its `loss` field (a bench-only
    use of a float field)."""
    count, rate = job.count, job.rate
    emit(RunStarted("timed", "(synthetic)", 1, 0, count, {}))
    started = time.perf_counter()
    for i in range(count):
        while time.perf_counter() - started < i / rate:
            time.sleep(0.0005)
        emit(StepMetrics(0, i, count, loss=time.time(), recon_loss=0.0, commit_loss=0.0))
    emit(RunCompleted(0, 0.0, "", time.perf_counter() - started))
    return "completed"


def plan_timed(request: Timed, place) -> Plan[Timed]:
    return Plan(request)


TIMED = RunType("timed", Timed, Timed, plan_timed, emit_timed)
RUN_TYPES_WITH_TIMED = {**RUN_TYPES, "timed": TIMED, "load": LOAD}


async def steps_per_second(core: Core, dataset: Path, epochs: int) -> tuple[float, float]:
    """(steady-state steps/s over epochs 1.., the run's wall seconds)."""
    request = TrainRequest(
        str(dataset), settings={"epochs": epochs, "stage_steps": 0, "preview_every": 1000}
    )
    started = time.perf_counter()
    run_id = await core.submit("vqvae", request)
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
    run_id = await core.submit("load", LoadRequest(events * 1000.0, 0.001))  # one burst
    last = None
    async for event in core.follow(run_id):  # step gauges may be coalesced: latest wins
        last = event
    seconds = time.perf_counter() - started
    stored = await core.store.last_seq(run_id)
    assert last is not None and last.seq == stored, "the follower did not see the run end"
    return stored / seconds


async def latency(core: Core, count: int, rate: float) -> tuple[float, float]:
    """(p50, p99) ms from the worker's emit to the follower's receipt."""
    run_id = await core.submit("timed", Timed(count, rate))
    delays = [
        (time.time() - event.payload["loss"]) * 1000
        async for event in core.follow(run_id)
        if event.kind == "step_metrics"
    ]
    q = quantiles(delays, n=100)
    return q[49], q[98]


async def measure(home: Path, dataset: Path, args, cluster: str | None) -> dict[str, float]:
    """One runner's figures; training is the best of --repeats runs (this machine is noisy)."""
    config = ClusterConfig(cluster) if cluster else None
    async with Core(home, run_types=RUN_TYPES_WITH_TIMED, cluster=config) as core:
        await burst(core, 500)  # warm: the worker is up and has imported torch
        trained = [await steps_per_second(core, dataset, args.epochs) for _ in range(args.repeats)]
        rate, wall = max(trained)
        events = await burst(core, args.events)
        p50, p99 = await latency(core, args.latency_events, args.rate)
    return {"steps": rate, "wall": wall, "events": events, "p50": p50, "p99": p99}


def on_local_cluster(home: Path, dataset: Path, args, environ: dict | None) -> dict[str, float]:
    """The same figures on a LocalCluster of one worker process; `environ`, when given,
    replaces what Dask's nanny sets in its worker's environment (pre-spawn-environ)."""
    import dask
    from distributed import LocalCluster

    settings = {} if environ is None else {"distributed.nanny.pre-spawn-environ": environ}
    with (
        dask.config.set(settings),
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
    ):
        return asyncio.run(measure(home, dataset, args, cluster.scheduler_address))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--latency-events", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="distill-cluster-bench-"))
    try:
        dataset = folder / "sounds"
        make_demo_set(dataset, count=24)
        shipped = sum(p.stat().st_size for p in dataset.iterdir())
        print(f"dataset: 24 generated sounds, {shipped / 1024:.0f} KiB shipped per attempt")
        local = asyncio.run(measure(folder / "home-local", dataset, args, None))
        remote = on_local_cluster(folder / "home-cluster", dataset, args, None)
        plain = on_local_cluster(folder / "home-plain", dataset, args, {})
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print("cluster: Dask's default worker environment; plain: pre-spawn-environ {} (README)")
    print(f"{'':32}{'local pool':>12}{'cluster':>10}{'ratio':>8}{'plain':>10}{'ratio':>8}")
    rows = [
        ("training steps/s (steady)", "steps", "{:.2f}"),
        ("  run wall seconds", "wall", "{:.1f}"),
        (f"events/s ({args.events} burst)", "events", "{:,.0f}"),
        (f"emit->follower p50 ms @{args.rate:.0f}/s", "p50", "{:.1f}"),
        (f"emit->follower p99 ms @{args.rate:.0f}/s", "p99", "{:.1f}"),
    ]
    for label, key, fmt in rows:
        cells = "".join(
            f"{fmt.format(run[key]):>10}{run[key] / local[key] if local[key] else float('nan'):>8.3f}"
            for run in (remote, plain)
        )
        print(f"{label:32}{fmt.format(local[key]):>12}{cells}")
    print("target: training steps/s ratio (cluster / local) >= 0.95")


if __name__ == "__main__":
    main()
