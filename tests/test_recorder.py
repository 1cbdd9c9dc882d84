"""The recorder on a real SQLite file: batches, "published implies stored", failed writes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from distill.core.recorder import Recorder, RecorderClosed
from distill.core.store import Store
from distill.events import Event, StepMetrics

RUNS = ("run-a", "run-b", "run-c")


def step_event(run_id: str, seq: int) -> Event:
    payload = StepMetrics(0, seq, 100, loss=1.0 / seq, recon_loss=0.5, commit_loss=0.25)
    return Event(run_id, seq, payload.kind, payload.to_dict(), ts=float(seq))


def interleaved(count: int) -> list[Event]:
    """`count` events round-robin over RUNS, each run's seqs 1, 2, 3 ..."""
    seqs = dict.fromkeys(RUNS, 0)
    events = []
    for i in range(count):
        run_id = RUNS[i % len(RUNS)]
        seqs[run_id] += 1
        events.append(step_event(run_id, seqs[run_id]))
    return events


async def open_store(path: Path) -> Store:
    store = await Store.open(path)
    for run_id in RUNS:
        await store.create_run(run_id, "vqvae", "/data", {})
    return store


class StoredCheck:
    """A publish callback that asserts, with its own connection, that each event is stored."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.batches: list[list[Event]] = []

    def __call__(self, batch: list[Event]) -> None:
        for event in batch:
            row = self.db.execute(
                "SELECT kind FROM events WHERE run_id = ? AND seq = ?", (event.run_id, event.seq)
            ).fetchone()
            assert row == (event.kind,), f"{event.run_id}/{event.seq} published before stored"
        self.batches.append(list(batch))

    @property
    def published(self) -> list[Event]:
        return [event for batch in self.batches for event in batch]


class FailingStore:
    """Wraps a store; its first `failures` appends fail as a broken disk would."""

    def __init__(self, store: Store, failures: int) -> None:
        self.store = store
        self.failures = failures
        self.calls = 0

    async def append(self, events: list[Event]) -> None:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError("disk I/O error")
        await self.store.append(events)


def test_batches_are_stored_in_order_before_they_are_published(tmp_path: Path) -> None:
    path = tmp_path / "distill.sqlite"
    events = interleaved(20_000)

    async def main() -> None:
        store = await open_store(path)
        check = StoredCheck(path)
        recorder = Recorder(store, check, max_batch=1000)
        try:
            await recorder.start()
            for event in events:
                recorder.submit(event)
            assert recorder.pending == len(events)  # submit never waits for the writer
            await recorder.flush()
            assert recorder.pending == 0

            assert check.published == events  # every event, once, in submission order
            assert len(check.batches) >= len(events) // 1000
            assert all(1 <= len(batch) <= 1000 for batch in check.batches)
            expected = {run_id: [e for e in events if e.run_id == run_id] for run_id in RUNS}
            for run_id in RUNS:
                stored = await store.events(run_id)
                assert stored == expected[run_id]
                assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
                assert (await store.run(run_id))["last_seq"] == len(stored)
        finally:
            check.db.close()
            await recorder.stop()
            await store.close()

    asyncio.run(main())


def test_failed_writes_lose_nothing_and_publish_nothing_until_committed(tmp_path: Path) -> None:
    path = tmp_path / "distill.sqlite"
    first, late = interleaved(30)[:25], interleaved(30)[25:]

    async def main() -> None:
        store = await open_store(path)
        check = StoredCheck(path)
        failing = FailingStore(store, failures=2)
        errors: list[BaseException] = []

        def on_error(exc: BaseException) -> None:
            assert recorder.last_error is exc
            assert check.batches == []  # nothing goes live before it is stored
            assert recorder.pending == len(first) + len(late) * len(errors)
            if not errors:
                for event in late:  # submitted while writes fail: they queue behind
                    recorder.submit(event)
            errors.append(exc)

        recorder = Recorder(failing, check, max_batch=1000, on_error=on_error)
        try:
            for event in first:
                recorder.submit(event)
            await recorder.start()
            await recorder.flush()
            await recorder.flush()  # the events on_error submitted
            assert [str(e) for e in errors] == ["disk I/O error"] * 2
            assert failing.calls >= 3
            assert recorder.last_error is None and recorder.pending == 0
            assert check.published == first + late
            for run_id in RUNS:
                assert await store.events(run_id) == [e for e in first + late if e.run_id == run_id]
        finally:
            check.db.close()
            await recorder.stop()
            await store.close()

    asyncio.run(main())


def test_stop_flushes_everything_pending_then_refuses_more(tmp_path: Path) -> None:
    path = tmp_path / "distill.sqlite"
    events = interleaved(2_500)

    async def main() -> None:
        store = await open_store(path)
        published: list[Event] = []
        recorder = Recorder(store, published.extend, max_batch=1000)
        await recorder.start()
        for event in events:
            recorder.submit(event)
        await recorder.stop()
        assert recorder.pending == 0 and published == events
        assert sum([await store.last_seq(run_id) for run_id in RUNS]) == len(events)
        with pytest.raises(RecorderClosed):
            recorder.submit(step_event(RUNS[0], 10_000))
        await store.close()

    asyncio.run(main())


def test_an_event_the_store_refuses_is_dropped_alone(tmp_path: Path) -> None:
    """A duplicate (run_id, seq) can never be written; it must not stall those after it."""
    path = tmp_path / "distill.sqlite"

    async def main() -> None:
        store = await open_store(path)
        original = step_event("run-a", 3)
        await store.append([original])
        check = StoredCheck(path)
        errors: list[BaseException] = []
        recorder = Recorder(store, check, max_batch=4, on_error=errors.append)
        try:
            await recorder.start()
            events = [step_event("run-a", seq) for seq in range(1, 11)]
            duplicate = Event("run-a", 3, "step_metrics", {"other": True}, 0.0)
            events[2] = duplicate
            for event in events:
                recorder.submit(event)
            await recorder.flush()
            assert check.published == [e for e in events if e is not duplicate]
            assert recorder.rejected == 1 and recorder.pending == 0
            assert len(errors) == 1 and isinstance(errors[0], sqlite3.IntegrityError)
            stored = await store.events("run-a")
            assert [e.seq for e in stored] == list(range(1, 11))
            assert stored[2] == original  # never overwritten
        finally:
            check.db.close()
            await recorder.stop()
            await store.close()

    asyncio.run(main())


def test_stop_with_a_timeout_gives_up_on_a_disk_that_never_recovers(tmp_path: Path) -> None:
    path = tmp_path / "distill.sqlite"

    async def main() -> None:
        store = await open_store(path)
        failing = FailingStore(store, failures=10**9)
        first_error = asyncio.get_running_loop().create_future()

        def on_error(exc: BaseException) -> None:
            if not first_error.done():
                first_error.set_result(exc)

        published: list[Event] = []
        recorder = Recorder(failing, published.extend, on_error=on_error)
        await recorder.start()
        for event in interleaved(3):
            recorder.submit(event)
        await first_error
        with pytest.raises(TimeoutError, match="3 not stored.*disk I/O error"):
            await recorder.stop(timeout=0.2)
        assert published == []
        assert [await store.events(run_id) for run_id in RUNS] == [[]] * len(RUNS)
        await store.close()

    asyncio.run(main())


def test_flush_before_start_refuses_and_stop_before_start_still_writes(tmp_path: Path) -> None:
    async def main() -> None:
        store = await open_store(tmp_path / "distill.sqlite")
        recorder = Recorder(store, lambda batch: None)
        await recorder.flush()  # nothing submitted: nothing to wait for
        recorder.submit(step_event("run-a", 1))
        assert recorder.pending == 1
        with pytest.raises(RuntimeError, match="not started"):
            await recorder.flush()
        await recorder.start()
        await recorder.flush()
        assert await store.last_seq("run-a") == 1
        await recorder.stop()

        never_started = Recorder(store, lambda batch: None)
        never_started.submit(step_event("run-a", 2))
        await never_started.stop()  # still writes what it was given
        assert await store.last_seq("run-a") == 2
        await store.close()

    asyncio.run(main())


def test_two_concurrent_stops_both_return_once_everything_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "distill.sqlite"
    events = interleaved(30)

    async def main() -> None:
        store = await open_store(path)
        published: list[Event] = []
        recorder = Recorder(store, published.extend, max_batch=10)
        await recorder.start()
        for event in events:
            recorder.submit(event)
        await asyncio.gather(recorder.stop(), recorder.stop())
        assert recorder.pending == 0 and published == events
        await store.close()

    asyncio.run(main())
