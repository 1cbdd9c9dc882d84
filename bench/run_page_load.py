"""Run page load time with 1,000 runs and 100,000 events in the database.

Builds a data directory through the store itself (each run: queued, started, scanned,
10 epochs of 8 steps and 3-level health, warnings, a preview, the model, completed: 100
events), starts a real server on it and times GET /runs/RUN_ID over HTTP for runs drawn
at random, then the runs list and the dashboard. The baseline, in the same process: the
same requests against a database holding one such run.

    .venv/bin/python bench/run_page_load.py [--runs 1000] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from distill.core.store import Store
from distill.events import (
    CheckpointSaved,
    CodebookWarning,
    DatasetScanned,
    EpochMetrics,
    Event,
    LevelHealth,
    ModelSaved,
    PreviewClip,
    PreviewReady,
    RunCompleted,
    RunQueued,
    RunStarted,
    StepMetrics,
)
from distill.paths import database_path
from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings

EPOCHS, STEPS = 10, 8


def run_payloads(dataset: str, name: str) -> list:
    """One finished run's payloads: exactly 100 events."""
    payloads = [
        RunQueued("vqvae", dataset, {}),
        RunStarted("vqvae", dataset, EPOCHS, 0, STEPS, {}),
        DatasetScanned(
            dataset, [f"{dataset}/{i}.wav" for i in range(12)], [], 12.0, 10, 2, 384, 64, 3, 64
        ),
    ]
    for epoch in range(EPOCHS):
        payloads += [
            StepMetrics(epoch, s, STEPS, 1.0 / (epoch + 1), 0.9, 0.01) for s in range(STEPS)
        ]
        levels = [LevelHealth(k, 64, 0.2 + 0.1 * k, 10.0 + k, 40 - k, 0.1) for k in (1, 2, 3)]
        payloads.append(
            EpochMetrics(epoch, EPOCHS, 1.0, 0.9, 0.01, 1.1, 1.0, 0.01, levels, epoch, 1.5)
        )
    payloads += [
        CodebookWarning(e, 1, 0.28, 0.3, "level 1 uses 18 of its 64 codes") for e in (7, 8, 9)
    ]
    clip = PreviewClip(
        "clip1", "a.wav", "b.wav", "c.wav", ["l1.wav", "l2.wav", "l3.wav"], "a.png", "c.png"
    )
    payloads += [
        PreviewReady(EPOCHS - 1, [clip]),
        CheckpointSaved(EPOCHS, "/x/checkpoint.distill"),
        ModelSaved(name, f"/x/{name}.distill"),
        RunCompleted(EPOCHS - 1, 1.1, f"/x/{name}.distill", 15.0),
    ]
    assert len(payloads) == 100
    return payloads


async def build(home: Path, runs: int) -> list[str]:
    store = await Store.open(database_path(home))
    ids = []
    try:
        now = time.time()
        for index in range(runs):
            run_id = f"run-{index:05d}"
            dataset = f"/sounds/set-{index % 20}"
            await store.create_run(run_id, "vqvae", dataset, {"dataset": dataset})
            events = [
                Event(run_id, seq, p.kind, p.to_dict(), now + index + seq / 1000)
                for seq, p in enumerate(run_payloads(dataset, f"model-{index}"), start=1)
            ]
            await store.append(events)
            ids.append(run_id)
    finally:
        await store.close()
    return ids


def time_requests(url: str, paths: list[str]) -> list[float]:
    with httpx.Client(base_url=url, trust_env=False) as client:
        client.get(paths[0])  # warm: templates compiled, connection open
        times = []
        for path in paths:
            started = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text[:200]
    return times


def measure(home: Path, runs: list[str], requests: int) -> dict[str, list[float]]:
    rng = random.Random(0)
    settings = ServerSettings.for_host(home, "127.0.0.1", 0)
    with ServerThread(settings) as server:
        return {
            "run page": time_requests(
                server.url, [f"/runs/{rng.choice(runs)}" for _ in range(requests)]
            ),
            "runs list": time_requests(server.url, ["/runs"] * max(10, requests // 10)),
            "home": time_requests(server.url, ["/"] * max(10, requests // 10)),
        }


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big", Path(tmp) / "small"
        started = time.perf_counter()
        big_runs = asyncio.run(build(big, args.runs))
        built = time.perf_counter() - started
        small_runs = asyncio.run(build(small, 1))
        large = measure(big, big_runs, args.requests)
        baseline = measure(small, small_runs, args.requests)
    print(
        f"{args.runs} runs, {args.runs * 100} events (built in {built:.1f} s); GET over HTTP, ms:"
    )
    for name in large:
        big_ms, small_ms = large[name], baseline[name]
        print(
            f"  {name:10s} p50 {statistics.median(big_ms):7.2f}  p99 {p99(big_ms):7.2f}"
            f"   | 1 run: p50 {statistics.median(small_ms):7.2f}"
            f"   ratio {statistics.median(big_ms) / statistics.median(small_ms):5.2f}x"
        )


if __name__ == "__main__":
    main()
