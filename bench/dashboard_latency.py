"""Latency from an event published on the bus to the DOM update in Chromium, p50/p99.

A real server (on a thread), a run page open in Debian's Chromium, and N step events
emitted through the core one at a time, each after the page showed the previous one
(so the 4-per-second throttle's leading edge sends each at once). The bus's publish
time of each event is recorded in Python; a MutationObserver in the page records when
the fragment carrying that seq landed in the DOM. Both clocks are this machine's wall
clock. The baseline, in the same process: the same events to a plain WebSocket client
of the JSON event stream (transport and follow, no rendering, no browser).

    .venv/bin/python bench/dashboard_latency.py [--events 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

from distill.events import RunStarted, StepMetrics
from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
OBSERVER = """() => {
    window.__landed = {};
    new MutationObserver(() => {
        const mark = document.getElementById("live-seq");
        if (mark && !(mark.dataset.seq in window.__landed))
            window.__landed[mark.dataset.seq] = performance.timeOrigin + performance.now();
    }).observe(document.body, {childList: true, subtree: true});
}"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def record_publishes(server: ServerThread) -> dict[tuple[str, int], float]:
    """Wrap the bus's publish to note the wall time each event is handed to subscribers."""
    published: dict[tuple[str, int], float] = {}
    bus = server.core.bus
    original = bus.publish

    def publish(event) -> None:
        published[(event.run_id, event.seq)] = time.time()
        original(event)

    bus.publish = publish
    return published


def new_run(server: ServerThread, run_id: str) -> None:
    async def create() -> None:
        await server.core.store.create_run(run_id, "vqvae", "/bench", {})
        server.core.emit(run_id, RunStarted("vqvae", "/bench", 1, 0, 10**6, {}))

    server.call(create())


def emit_step(server: ServerThread, run_id: str, step: int) -> None:
    async def emit() -> None:
        server.core.emit(run_id, StepMetrics(0, step, 10**6, 1.0, 1.0, 0.0))

    server.call(emit())


def browser_latencies(server: ServerThread, published: dict, count: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    run_id = "latency-browser"
    new_run(server, run_id)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
        )
        page = browser.new_page()
        page.goto(f"{server.url}/runs/{run_id}")
        page.evaluate(OBSERVER)
        page.wait_for_function("document.body.dataset.socket === 'open'")
        seqs = []
        for step in range(count):
            emit_step(server, run_id, step)
            seq = step + 2  # run_started is seq 1
            seqs.append(seq)
            page.wait_for_function(f"'{seq}' in window.__landed", timeout=30_000)
            # wait out the throttle so the next event goes out on the leading edge
            page.wait_for_timeout(300)
        landed = page.evaluate("window.__landed")
        browser.close()
    return [(landed[str(s)] / 1000 - published[(run_id, s)]) * 1000 for s in seqs]


def websocket_latencies(server: ServerThread, published: dict, count: int) -> list[float]:
    run_id = "latency-ws"
    new_run(server, run_id)

    async def follow() -> list[float]:
        received = {}
        async with connect(f"{server.ws_url}/ws/runs/{run_id}/events?after=1", proxy=None) as ws:
            for step in range(count):
                await asyncio.to_thread(emit_step, server, run_id, step)
                event = json.loads(await ws.recv())
                received[event["seq"]] = time.time()
        return [(t - published[(run_id, seq)]) * 1000 for seq, t in received.items()]

    return asyncio.run(follow())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = ServerSettings.for_host(Path(tmp), "127.0.0.1", 0)
        with ServerThread(settings) as server:
            published = record_publishes(server)
            base = websocket_latencies(server, published, args.events)
            dom = browser_latencies(server, published, args.events)
    print(f"bus publish -> DOM update in Chromium, {len(dom)} events (ms):")
    print(f"  browser  p50 {statistics.median(dom):7.2f}  p99 {percentile(dom, 0.99):7.2f}")
    print(
        f"  ws JSON  p50 {statistics.median(base):7.2f}  p99 {percentile(base, 0.99):7.2f}  (baseline)"
    )
    print(f"  ratio    p50 {statistics.median(dom) / statistics.median(base):7.2f}x")


if __name__ == "__main__":
    main()
