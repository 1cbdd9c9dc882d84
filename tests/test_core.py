"""The asyncio core with real parts: spawned workers, a real SQLite file, the bus."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from core_runs import assert_no_gaps, collect, request, stored_events
from helpers import write_good_sounds
from waiting import wait_until, within_deadline

from distill.core.core import Core, RunError
from distill.core.worker import init_worker
from distill.events import TERMINAL_KINDS
from distill.paths import database_path
from distill.training.jobs import RUN_TYPES


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    write_good_sounds(tmp_path / "sounds")
    return tmp_path / "sounds"


def test_a_run_goes_through_worker_store_and_followers(dataset: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"

    async def scenario():
        async with Core(home, run_types=RUN_TYPES) as core:
            run_id = await core.submit("vqvae", request(dataset, name="through-core"))
            first, second = await asyncio.gather(collect(core, run_id), collect(core, run_id))
            return run_id, first, second, await core.store.run(run_id)

    run_id, first, second, row = within_deadline(scenario())
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
            run_id = await core.submit("vqvae", request(dataset, epochs=3))
            async for event in core.follow(run_id):
                if event.kind == "epoch_metrics":
                    break  # leave mid-run...
            late = await collect(core, run_id, after=event.seq)  # ...and come back
            return run_id, event.seq, late

    run_id, left_at, late = within_deadline(scenario())
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
            core.emit("r", RunStarted("vqvae", "/x", 1, 0, 1, {}))
            await core.recorder.flush()
            read_events, ended = core.store.events, []

            async def events_then_the_end(run_id: str, **kwargs):
                page = await read_events(run_id, **kwargs)
                if not ended:
                    ended.append(True)
                    core.emit("r", RunCompleted(0, 1.0, "/x/r.distill", 1.0))
                    await core.recorder.flush()
                return page

            core.store.events = events_then_the_end
            return [event.kind for event in await collect(core, "r", after=1)]
        finally:
            await core.stop()

    assert within_deadline(scenario()) == ["run_completed"]


def test_cancel_a_running_and_a_queued_run(dataset: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"

    async def scenario():
        async with Core(home, concurrency=1, run_types=RUN_TYPES) as core:
            running = await core.submit("vqvae", request(dataset, epochs=50))
            queued = await core.submit("vqvae", request(dataset, epochs=50))
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

    running, queued, running_row, queued_row = within_deadline(scenario())
    assert running_row["status"] == "cancelled"
    assert queued_row["status"] == "cancelled"
    assert stored_events(home, queued)[-1][1] == "run_cancelled"
    assert stored_events(home, running)[-1][1] == "run_cancelled"
    with pytest.raises(RunError, match="no run"):
        within_deadline(_cancel(home, "nope"))


async def _cancel(home: Path, run_id: str) -> None:
    async with Core(home, run_types=RUN_TYPES) as core:
        await core.cancel(run_id)


def test_a_killed_worker_fails_its_run_and_resume_finishes(dataset: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"

    async def scenario():
        async with Core(home, run_types=RUN_TYPES) as core:
            run_id = await core.submit("vqvae", request(dataset, epochs=4))
            async for event in core.follow(run_id):
                if event.kind == "checkpoint_saved":
                    for pid in core.runner.worker_pids():
                        os.kill(pid, signal.SIGKILL)
            failed = await core.store.run(run_id)
            before = stored_events(home, run_id)
            await core.resume(run_id)
            resumed = await collect(core, run_id, after=before[-1][0])
            # the pool recovered: a new run trains too
            other = await core.submit("vqvae", request(dataset, epochs=1))
            other_events = await collect(core, other)
            return run_id, failed, before, resumed, other_events

    run_id, failed, before, resumed, other_events = within_deadline(scenario())
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
        "from core_runs import request\n"
        "from distill.core.core import Core\n"
        "from distill.training.jobs import RUN_TYPES\n"
        "from pathlib import Path\n"
        "async def main():\n"
        "    async with Core(Path(sys.argv[1]), run_types=RUN_TYPES) as core:\n"
        "        run_id = await core.submit('vqvae', request(Path(sys.argv[2]), epochs=200))\n"
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

    row, resumed = within_deadline(scenario())
    assert row["status"] == "interrupted"
    started = next(e for e in resumed if e.kind == "run_started")
    assert started.payload["start_epoch"] >= 1  # from the checkpoint, not from scratch
    assert resumed[-1].kind == "run_cancelled"
    assert_no_gaps(stored_events(home, run_id))


def _wait_for_checkpoint(home: Path, process: subprocess.Popen) -> str:
    """The run id, once the other process's database holds a checkpoint of it."""

    def checkpointed() -> str | None:
        assert process.poll() is None, "the core exited on its own"
        if not database_path(home).exists():
            return None
        try:
            with contextlib.closing(sqlite3.connect(database_path(home))) as db:
                row = db.execute(
                    "SELECT run_id FROM events WHERE kind = 'checkpoint_saved' LIMIT 1"
                ).fetchone()
        except sqlite3.OperationalError:  # the other process is still creating the tables
            return None
        return row[0] if row else None

    return wait_until(checkpointed, what="the other process's run to save a checkpoint")


def test_a_worker_ignores_ctrl_c(monkeypatch) -> None:
    import torch

    from distill.threads import THREAD_VARIABLES, WAIT_POLICY_VARIABLE

    for name in (*THREAD_VARIABLES, WAIT_POLICY_VARIABLE):  # init_worker sets them here:
        monkeypatch.setenv(name, "")  # set, so that the undo removes them
        monkeypatch.delenv(name)
    before, handler = torch.get_num_threads(), signal.getsignal(signal.SIGINT)
    try:
        init_worker(None, 1)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        torch.set_num_threads(before)
        signal.signal(signal.SIGINT, handler)


def test_terminal_kinds_end_every_follow() -> None:
    assert {"run_completed", "run_failed", "run_cancelled", "run_interrupted"} == TERMINAL_KINDS
