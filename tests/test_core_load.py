"""The core under load: a real worker emitting 10,000 events/s, four followers, one slow.

The full minute runs in bench/core_load.py (with loop lag and memory figures); this is
the same shape, short enough for the suite, asserting only what must hold at any speed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from waiting import within_deadline

from distill.core.core import Core
from distill.events import StepMetrics
from distill.loadgen import LOAD, LoadRequest
from distill.paths import database_path

RATE, SECONDS = 10_000, 2.0


async def follow(core: Core, run_id: str, slow: bool = False) -> list[tuple[int, str]]:
    """Every (seq, kind) a follower sees; a slow one yields the loop for a while now and
    then, so its bus queue overflows and it has to resync from the store."""
    seen = []
    async for event in core.follow(run_id):
        seen.append((event.seq, event.kind))
        if slow and len(seen) % 20 == 0:
            await asyncio.sleep(0.005)  # a slow consumer, not a wait for anything
    return seen


async def load_run(home: Path) -> tuple[str, list[list[tuple[int, str]]]]:
    async with Core(home, run_types={"load": LOAD}) as core:
        run_id = await core.submit("load", LoadRequest(RATE, SECONDS))
        followers = [follow(core, run_id) for _ in range(3)] + [follow(core, run_id, slow=True)]
        return run_id, await asyncio.gather(*followers)


def test_no_gap_no_duplicate_under_load(tmp_path: Path) -> None:
    run_id, streams = within_deadline(load_run(tmp_path))

    with sqlite3.connect(database_path(tmp_path)) as db:
        stored = db.execute(
            "SELECT seq, kind FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
        ).fetchall()
        status = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    events = int(RATE * SECONDS)
    assert [seq for seq, _ in stored] == list(range(1, events + 4))  # queued, started, end
    assert status == ("completed",)

    must_arrive = [row for row in stored if row[1] != StepMetrics.kind]
    for stream in streams:
        seqs = [seq for seq, _ in stream]
        assert seqs == sorted(set(seqs)), "a follower saw an event twice or out of order"
        assert [row for row in stream if row[1] != StepMetrics.kind] == must_arrive
        assert set(stream) <= set(stored)
        assert stream[-1] == stored[-1]
