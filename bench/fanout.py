"""Fan-out: training steps per second with 50 WebSocket clients on the run, against none.

A real server (on a thread) trains the demo set; each run is watched either by nobody or
by 50 clients of the run page's stream (the HTML fragments a browser tab gets), all
reading. Steps/s is taken from the stored step events' timestamps, within each epoch
(first step excluded), so start-up, validation and previews do not count. Runs alternate
(none, 50, none, 50, ...); the medians are compared, and each back-to-back pair (less
exposed to other load on the machine). The target is a ratio >= 0.95.
The clients run in this process, on their own thread, as browsers on the same machine
would compete for the same cores.

    .venv/bin/python bench/fanout.py [--clients 50] [--repeats 2] [--epochs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from distill.audio.synth import make_demo_set
from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings


def step_rate(events) -> float:
    by_epoch: dict[int, list[float]] = {}
    for event in events:
        if event.kind == "step_metrics":
            by_epoch.setdefault(event.payload["epoch"], []).append(event.ts)
    steps = sum(len(ts) - 1 for ts in by_epoch.values())
    seconds = sum(ts[-1] - ts[0] for ts in by_epoch.values())
    return steps / seconds


async def watch(server: ServerThread, run_id: str, clients: int, ready: threading.Event) -> int:
    """`clients` page streams on the run, each reading until the run ends; messages read."""

    async def one(opened: asyncio.Event) -> int:
        count = 0
        async with connect(f"{server.ws_url}/ws/runs/{run_id}?after=0", proxy=None) as ws:
            opened.set()
            async for _ in ws:
                count += 1
        return count

    flags = [asyncio.Event() for _ in range(clients)]
    tasks = [asyncio.create_task(one(flag)) for flag in flags]
    await asyncio.gather(*(flag.wait() for flag in flags))
    ready.set()
    return sum(await asyncio.gather(*tasks))


def train(server: ServerThread, dataset: Path, epochs: int, clients: int) -> tuple[float, int]:
    body = {
        "dataset": str(dataset),
        "settings": {"epochs": epochs, "preview_every": 1000},
    }
    run_id = httpx.post(f"{server.url}/api/runs", json=body, trust_env=False).json()["run_id"]
    ready = threading.Event()
    result: dict[str, int] = {}
    watcher = threading.Thread(
        target=lambda: result.update(n=asyncio.run(watch(server, run_id, clients, ready)))
    )
    if clients:
        watcher.start()
        ready.wait()
    server.call(_until_end(server, run_id), timeout=3600)
    if clients:
        watcher.join()
    return step_rate(server.call(server.core.store.events(run_id))), result.get("n", 0)


async def _until_end(server: ServerThread, run_id: str) -> None:
    async for _ in server.core.follow(run_id):
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(tmp) / "demo"
        make_demo_set(dataset)
        settings = ServerSettings.for_host(
            Path(tmp) / "home", "127.0.0.1", 0, allowed_roots=(Path(tmp),)
        )
        with ServerThread(settings) as server:
            train(server, dataset, 1, 0)  # warm up: spawn the worker, fill the mel cache
            alone, watched, messages = [], [], []
            for _ in range(args.repeats):
                alone.append(train(server, dataset, args.epochs, 0)[0])
                rate, count = train(server, dataset, args.epochs, args.clients)
                watched.append(rate)
                messages.append(count)
            dropped = server.app.state.streams.stats.dropped
    print(f"training steps/s, {args.epochs} epochs per run, {args.repeats} runs each (median):")
    print(f"  no clients          {statistics.median(alone):7.2f}  {[round(r, 2) for r in alone]}")
    print(
        f"  {args.clients} page clients     {statistics.median(watched):7.2f}  {[round(r, 2) for r in watched]}"
    )
    print(
        f"  ratio               {statistics.median(watched) / statistics.median(alone):7.3f}  (target >= 0.95)"
    )
    pairs = [round(w / a, 3) for w, a in zip(watched, alone, strict=True)]
    print(f"  ratio of each back-to-back pair {pairs}")
    print(
        f"  messages per client per run {statistics.median(messages) / args.clients:.0f}, clients dropped {dropped}"
    )


if __name__ == "__main__":
    main()
