"""The recorder: the one writer that moves events from the core into SQLite.

`submit` never blocks the caller: it appends to a queue and wakes the writer task. The
writer takes up to `max_batch` pending events, commits them in one transaction, and
only then hands that batch to `publish`. So an event a follower sees live is already
stored, and a follower that joins late reads the store, then continues from the next
seq: no gap, no duplicate.

A write that fails (disk I/O error, disk full, a lock held too long) loses nothing: the
batch stays at the head of the queue and is retried with a bounded backoff, and events
submitted meanwhile queue behind it, in order. Nothing is published until it commits.

An event the store refuses for what it is (its (run_id, seq) is already stored, its run
was never created, its payload is not JSON) can never be written, and retrying it would
stall every event behind it. The writer narrows the failing batch down by halves to that
one event, drops it, reports it through `on_error` and counts it in `rejected`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Protocol

from distill.events import Event

logger = logging.getLogger(__name__)

FIRST_RETRY_S = 0.05  # the backoff after a failed write doubles from here ...
MAX_RETRY_S = 2.0  # ... up to here, and stays there while writes keep failing
# Errors that say "this event can never be stored": a broken constraint, a value SQLite
# cannot bind, a payload that is not JSON. Errors of the file or the disk (OperationalError:
# I/O error, disk full, locked; DatabaseError: a damaged file) say "not now" instead.
REJECTED = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    TypeError,
    ValueError,
    OverflowError,
)
RETRIED = (sqlite3.OperationalError, sqlite3.DatabaseError)


class EventStore(Protocol):
    async def append(self, events: list[Event]) -> None: ...


class RecorderClosed(RuntimeError):
    """An event was submitted after the recorder stopped."""


class Recorder:
    """Batches events into the store and publishes each batch once it is committed.

    `submit` is for the event loop's thread. `publish` is called on that loop, with
    batches in submission order; it must not block (the bus's `publish_many` does not).
    """

    def __init__(
        self,
        store: EventStore,
        publish: Callable[[list[Event]], None],
        max_batch: int = 1000,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._store = store
        self._publish = publish
        self._max_batch = max_batch
        self._on_error = on_error
        self._queue: deque[Event] = deque()  # submitted, not yet committed; head first
        self._wake = asyncio.Event()
        self._submitted = 0  # events ever submitted
        self._settled = 0  # events ever committed or rejected: always a prefix
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # (settled target, future)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.last_error: BaseException | None = None  # why writes fail; None once one commits
        self.rejected = 0  # events dropped because the store can never take them

    @property
    def pending(self) -> int:
        """Events submitted and not yet committed (the batch being written included)."""
        return len(self._queue)

    def submit(self, event: Event) -> None:
        """Queue an event for writing; returns at once. Allowed before `start`."""
        if self._closed:
            raise RecorderClosed(f"recorder stopped; cannot record {event.kind} of {event.run_id}")
        self._queue.append(event)
        self._submitted += 1
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._write_loop(), name="distill-recorder")

    async def flush(self) -> None:
        """Return once every event submitted before this call is committed (or rejected).

        Raises what stopped the writer, if it died.
        """
        if self._settled >= self._submitted:
            return
        if self._task is None:
            raise RuntimeError("the recorder is not started: nothing would write these events")
        if self._task.done():
            self._task.result()  # raises what killed it
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((self._submitted, future))
        await future

    async def stop(self, timeout: float | None = None) -> None:
        """Refuse new events, write everything pending, then end the writer.

        While writes keep failing this waits; with a `timeout` it gives up after that
        many seconds, ends the writer and raises TimeoutError saying how many events
        were not stored.
        """
        self._closed = True
        if self._task is None:
            if not self._queue:
                return
            await self.start()  # never started: write what was submitted anyway
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            lost = len(self._queue)
            raise TimeoutError(
                f"gave up writing events after {timeout} s: {lost} not stored "
                f"(last error: {self.last_error})"
            ) from None
        finally:
            task, self._task = self._task, None
            if task is not None:  # None when a concurrent stop already ended the writer
                task.cancel()  # idle after a flush, or still retrying after a timeout
                await asyncio.gather(task, return_exceptions=True)

    # -- the writer ---------------------------------------------------------------------

    async def _write_loop(self) -> None:
        try:
            await self._write_forever()
        except BaseException as exc:
            for _, future in self._waiters:
                if not future.done():
                    future.set_exception(
                        exc if isinstance(exc, Exception) else RecorderClosed("writer stopped")
                    )
            self._waiters.clear()
            raise

    async def _write_forever(self) -> None:
        size = self._max_batch  # smaller while narrowing a refused batch down
        suspects = 0  # head events among which a refused one hides
        delay = FIRST_RETRY_S
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            batch = list(islice(self._queue, size))
            try:
                await self._store.append(batch)
            except REJECTED as exc:
                if len(batch) > 1:
                    suspects, size = len(batch), len(batch) // 2
                    continue
                self._queue.popleft()
                self.rejected += 1
                logger.error(
                    "dropped %s event %s/%s: %s", batch[0].kind, batch[0].run_id, batch[0].seq, exc
                )
                self._report(exc)
                self._settle(1)
                suspects, size = 0, self._max_batch
                continue
            except RETRIED as exc:
                self.last_error = exc
                logger.warning(
                    "writing %d events failed, retrying in %.2f s: %s", len(batch), delay, exc
                )
                self._report(exc)
                await asyncio.sleep(delay)
                delay = min(2 * delay, MAX_RETRY_S)
                continue
            delay = FIRST_RETRY_S
            self.last_error = None
            suspects -= len(batch)
            if suspects <= 0:  # past the refused batch (it failed once, then went in)
                size = self._max_batch
            for _ in batch:
                self._queue.popleft()
            try:
                self._publish(batch)
            except Exception:  # a follower's bug must not stop the record being written
                logger.exception("publishing %d stored events failed", len(batch))
            self._settle(len(batch))

    def _settle(self, count: int) -> None:
        """Count events as done and release every flush waiting on them."""
        self._settled += count
        still_waiting = []
        for target, future in self._waiters:
            if target <= self._settled:
                if not future.done():
                    future.set_result(None)
            else:
                still_waiting.append((target, future))
        self._waiters = still_waiting

    def _report(self, exc: BaseException) -> None:
        if self._on_error is None:
            return
        try:
            self._on_error(exc)
        except Exception:  # the writer must outlive a broken error callback
            logger.exception("on_error callback failed")
