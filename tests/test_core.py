"""The asyncio core with real parts: spawned workers, a real SQLite file, the bus."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_MEL, TINY_MODEL, write_good_sounds

from distill.core.core import Core, RunError, TrainRequest
from distill.core.worker import init_worker
from distill.events import TERMINAL_KINDS
from distill.paths import database_path
from distill.training.jobs import RUN_TYPES

DEADLINE = 180.0  # seconds; a guard against hangs, never a speed check


def request(dataset: Path, epochs: int = 2, name: str | None = None) -> TrainRequest:
    return TrainRequest(
        dataset=str(dataset),
        model_name=name,
        settings={"epochs": epochs, "batch_size": 4, "min_steps_per_epoch": 2, "preview_every": 1},
        overrides=TINY_MODEL,
        mel=TINY_MEL.to_dict(),
    )


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, DEADLINE))


async def collect(core: Core, run_id: str, after: int = 0) -> list:
    return [event async for event in core.follow(run_id, after_seq=after)]


def stored_events(home: Path, run_id: str) -> list[tuple[int, str]]:
    with sqlite3.connect(database_path(home)) as db:
        return db.execute(
            "SELECT seq, kind FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
        ).fetchall()


def assert_no_gaps(rows) -> None:
    assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    write_good_sounds(tmp_path / "sounds")
    return tmp_path / "sounds"


def test_a_run_goes_through_worker_store_and_followers(dataset: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"

    async def scenario():
        async with Core(home, run_types=RUN_TYPES) as core:
            run_id = await core.submit_training(request(dataset, name="through-core"))
            first, second = await asyncio.gather(collect(core, run_id), collect(core, run_id))
            return run_id, first, second, await core.store.run(run_id)

    run_id, first, second, row = run(scenario())
    rows = stored_events(home, run_id)
    assert_no_gaps(rows)
    assert [(e.seq, e.kind) for e in first] == rows
    assert [(e.seq, e.kind) for e in second] == rows, "two followers see the same stream"
    assert rows[0][1] == "run_queued" and rows[-1][1] == "run_completed"
    assert row["status"] == "completed" and row["model_name"] == "through-core"
    assert (home / "models" / "through-core.distill").is_file()


def test_a_late_follower_reads_history_then_goes_on_live(dataset: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"

    async def scenario():
        async with Core(home, run_types=RUN_TYPES) as core:
            run_id = await core.submit_training(request(dataset, epochs=3))
            async for event in core.follow(run_id):
                if event.kind == "epoch_metrics":
                    break  # leave mid-run...
            late = await collect(core, run_id, after=event.seq)  # ...and come back
            return run_id, event.seq, late

    run_id, left_at, late = run(scenario())
    rows = stored_events(home, run_id)
    assert [(e.seq, e.kind) for e in late] == rows[left_at:]


def test_follow_delivers_an_end_committed_while_it_reads_the_store(tmp_path: Path) -> None:
    """A follower reads the stored events, finds none new, then checks whether the run has
    ended. An end committed between the two was once skipped (a reconnecting client got
    nothing and the stream closed). The store's read is wrapped to commit the end at
    exactly that moment: a real store and recorder, with the race made deterministic."""
    from distill.events import RunCompleted, RunStarted

    async def scenario() -> list[str]:
        core = Core(tmp_path / "home", run_types=RUN_TYPES)
        await core.start()
        try:
            await core.store.create_run("r", "vqvae", "/x", {})
            core._emit("r", RunStarted("vqvae", "/x", 1, 0, 1, {}))
            await core.recorder.flush()
            read_events, ended = core.store.events, []

            async def events_then_the_end(run_id: str, **kwargs):
                page = await read_events(run_id, **kwargs)
                if not ended:
                    ended.append(True)
                    core._emit("r", RunCompleted(0, 1.0, "/x/r.distill", 1.0))
                    await core.recorder.flush()
                return page

            core.store.events = events_then_the_end
            return [event.kind for event in await collect(core, "r", after=1)]
        finally:
            await core.stop()

    assert run(scenario()) == ["run_completed"]


def test_cancel_a_running_and_a_queued_run(dataset: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"

    async def scenario():
        async with Core(home, concurrency=1, run_types=RUN_TYPES) as core:
            running = await core.submit_training(request(dataset, epochs=50))
            queued = await core.submit_training(request(dataset, epochs=50))
            await core.cancel(queued)
            async for event in core.follow(running):
                if event.kind == "step_metrics":
                    await core.cancel(running)
            return (
                running,
                queued,
                await core.store.run(running),
                await core.store.run(queued),
            )

    running, queued, running_row, queued_row = run(scenario())
    assert running_row["status"] == "cancelled"
    assert queued_row["status"] == "cancelled"
    assert stored_events(home, queued)[-1][1] == "run_cancelled"
    assert stored_events(home, running)[-1][1] == "run_cancelled"
    with pytest.raises(RunError, match="no run"):
        run(_cancel(home, "nope"))


async def _cancel(home: Path, run_id: str) -> None:
    async with Core(home, run_types=RUN_TYPES) as core:
        await core.cancel(run_id)


def test_a_killed_worker_fails_its_run_and_resume_finishes(dataset: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"

    async def scenario():
        async with Core(home, run_types=RUN_TYPES) as core:
            run_id = await core.submit_training(request(dataset, epochs=4))
            async for event in core.follow(run_id):
                if event.kind == "checkpoint_saved":
                    for pid in core.runner.worker_pids():
                        os.kill(pid, signal.SIGKILL)
            failed = await core.store.run(run_id)
            before = stored_events(home, run_id)
            await core.resume(run_id)
            resumed = await collect(core, run_id, after=before[-1][0])
            # the pool recovered: a new run trains too
            other = await core.submit_training(request(dataset, epochs=1))
            other_events = await collect(core, other)
            return run_id, failed, before, resumed, other_events

    run_id, failed, before, resumed, other_events = run(scenario())
    assert failed["status"] == "failed"
    assert "worker process died" in failed["error"]
    assert "checkpoint_saved" in [kind for _, kind in before], "acknowledged events are kept"
    assert before[-1][1] == "run_failed"
    assert resumed[0].kind == "run_queued"
    started = next(e for e in resumed if e.kind == "run_started")
    assert started.payload["start_epoch"] >= 1
    assert resumed[-1].kind == "run_completed"
    assert_no_gaps(stored_events(home, run_id))
    assert other_events[-1].kind == "run_completed"


def test_a_killed_core_leaves_its_run_interrupted_and_resumable(
    dataset: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    script = (
        "import asyncio, sys\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_core import request\n"
        "from distill.core.core import Core\n"
        "from distill.training.jobs import RUN_TYPES\n"
        "from pathlib import Path\n"
        "async def main():\n"
        "    async with Core(Path(sys.argv[1]), run_types=RUN_TYPES) as core:\n"
        "        run_id = await core.submit_training(request(Path(sys.argv[2]), epochs=200))\n"
        "        async for _ in core.follow(run_id): pass\n"
        "asyncio.run(main())\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(home), str(dataset)], start_new_session=True
    )
    try:
        run_id = _wait_for_checkpoint(home, process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the core and its worker, no goodbye
        process.wait()

    async def scenario():
        async with Core(home, run_types=RUN_TYPES) as core:
            row = await core.store.run(run_id)
            await core.resume(run_id)
            resumed = []
            async for event in core.follow(run_id, after_seq=row["last_seq"]):
                resumed.append(event)
                if event.kind == "epoch_metrics":  # it goes on: no need to train 200 epochs
                    await core.cancel(run_id)
            return row, resumed

    row, resumed = run(scenario())
    assert row["status"] == "interrupted"
    started = next(e for e in resumed if e.kind == "run_started")
    assert started.payload["start_epoch"] >= 1  # from the checkpoint, not from scratch
    assert resumed[-1].kind == "run_cancelled"
    assert_no_gaps(stored_events(home, run_id))


def _wait_for_checkpoint(home: Path, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        assert process.poll() is None, "the core exited on its own"
        if database_path(home).exists():
            try:
                with sqlite3.connect(database_path(home)) as db:
                    row = db.execute(
                        "SELECT run_id FROM events WHERE kind = 'checkpoint_saved' LIMIT 1"
                    ).fetchone()
            except sqlite3.OperationalError:  # the other process is still creating the tables
                row = None
            if row:
                return row[0]
        time.sleep(0.1)  # polling another process's database, with a deadline
    raise AssertionError("no checkpoint within the deadline")


def test_workers_share_the_cores(tmp_path: Path) -> None:
    import torch

    before, handler = torch.get_num_threads(), signal.getsignal(signal.SIGINT)
    try:
        init_worker(None, 1)
        assert torch.get_num_threads() == 1
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        torch.set_num_threads(before)
        signal.signal(signal.SIGINT, handler)
    from distill.core.runner import JobRunner

    runner = JobRunner(lambda batch: None, lambda run_id: None, concurrency=2)
    assert runner.threads == max(1, (os.cpu_count() or 1) // 2)


def test_terminal_kinds_end_every_follow() -> None:
    assert {"run_completed", "run_failed", "run_cancelled", "run_interrupted"} == TERMINAL_KINDS
