"""The asyncio core: one per process. It owns the store, the bus and the runner.

Every event of every run passes through `emit`, which stamps it with the run's next
`seq` and hands it to the recorder; the recorder commits batches to SQLite and only then
publishes them on the bus. So anything a follower sees is already stored, and a follower
that joins late reads the store first, then goes on live from the next seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill.core.bus import FELL_BEHIND, EventBus, SubscriptionClosed
from distill.core.cluster_config import ClusterConfig
from distill.core.owners import interrupt_orphans, orphaned, owner_of
from distill.core.recorder import Recorder
from distill.core.runner import RUNNER_LOST, WORKER_DIED, Job, JobRunner, Runner
from distill.core.store import OWNER_FIELD, Store
from distill.events import (
    TERMINAL_KINDS,
    UNFINISHED_STATUSES,
    Event,
    Payload,
    RunCancelled,
    RunFailed,
    RunInterrupted,
    RunQueued,
)
from distill.files import DISK_FULL_ERRNOS, DiskFullError, remove_stale_temporaries

if TYPE_CHECKING:
    from distill.core.cluster import ClusterRunner
from distill.paths import (
    CANCEL_FILE,
    CHECKPOINT_NAME,
    KEEP_BEST_FILE,
    data_home,
    database_path,
    models_dir,
    runs_dir,
)
from distill.run_types import PathRole, Place, Plan, RunContext, RunRefused, RunSpec, RunType

FOLLOW_PAGE = 500  # events read from the store at a time by a catching-up follower


class RunError(ValueError):
    """A request the core refuses: unknown run, a run that cannot be resumed, a taken name."""


class DiskFull(RunError):
    """A run could not be put on record: the disk (or the database on it) is full. Nothing
    of the run is left behind: no row, no folder."""

    def __init__(self, path: Path | str) -> None:
        # the words are files.DiskFullError's, the one place a full disk is phrased
        super().__init__(f"{DiskFullError(path)}: free some space, then submit again")
        self.path = str(path)


def is_disk_full(error: BaseException) -> bool:
    """ENOSPC from a file write, or SQLite's "database or disk is full"."""
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    return isinstance(error, sqlite3.Error) and "full" in str(error).lower()


def new_run_id() -> str:
    """Sortable by start time, unique enough for one machine."""
    import secrets
    from datetime import datetime

    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class Core:
    def __init__(
        self,
        home: Path | None = None,
        concurrency: int = 1,
        run_types: Mapping[str, RunType] | None = None,
        cluster: ClusterConfig | None = None,
    ) -> None:
        """`run_types`: what this core can run (name -> RunType, as in
        distill.training.jobs.RUN_TYPES); handed in, so the core imports nothing above it.
        A core built without them still follows, lists and cancels runs.

        `cluster`: run the jobs on that Dask cluster (core/cluster.py) instead of a local
        process pool of `concurrency` workers; only then is Dask imported."""
        self.home = home or data_home()
        self.run_types = dict(run_types or {})
        lanes = {kind.lane: 1 for kind in self.run_types.values()}
        self.bus = EventBus()
        self._store: Store | None = None  # both made by start()
        self._recorder: Recorder | None = None
        self.runner: Runner
        # What only a cluster can do (list its workers) is asked of it by this name.
        self.cluster_runner: ClusterRunner | None = None
        if cluster is None:
            self.runner = JobRunner(
                self._on_worker_messages, self._cancelled_while_queued, concurrency, lanes
            )
        else:
            from distill.core.cluster import ClusterRunner

            self.cluster_runner = ClusterRunner(
                cluster, self._on_worker_messages, self._cancelled_while_queued
            )
            self.runner = self.cluster_runner
        self.cluster = cluster
        self._seq: dict[str, int] = {}
        self._finished: set[str] = set()  # runs whose current attempt reached a terminal event
        self._naming = asyncio.Lock()  # held from checking a model name to recording its run
        # The last failed SQLite write (disk full, I/O error); the recorder keeps the events
        # and retries, so this is news for a status line, not a loss.
        self.last_write_error: str | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("start() the core first: it has no store yet")
        return self._store

    @property
    def recorder(self) -> Recorder:
        if self._recorder is None:
            raise RuntimeError("start() the core first: it has no recorder yet")
        return self._recorder

    async def start(self) -> None:
        remove_stale_temporaries(models_dir(self.home))  # left by a process killed mid-save
        self._store = await Store.open(database_path(self.home))
        self._recorder = Recorder(self._store, self.bus.publish_many, on_error=self._on_write_error)
        await self._recorder.start()
        await self._interrupt_orphans()
        try:
            await self.runner.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Running jobs checkpoint and stop; every acknowledged event is flushed first."""
        await self.runner.stop()
        if self._recorder is not None:
            await self._recorder.stop()
        if self._store is not None:
            await self._store.close()

    async def __aenter__(self) -> Core:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- runs ---------------------------------------------------------------------------

    def register(self, run_type: RunType) -> None:
        """Add a run type after the core was made (a test's, a benchmark's)."""
        self.run_types[run_type.name] = run_type

    async def submit(self, run_type: str, request: Any) -> str:
        """Queue a run of `run_type` (one this core was handed) for `request`, that run
        type's own request; returns the run id once the run is on record.

        The run type plans the request first (in a thread: it may read a model's card),
        and may refuse it (RunError). A run type that makes a model holds its name from
        here to its end: no two unfinished runs make one name."""
        kind = self._run_type(run_type)
        if not isinstance(request, kind.request):
            raise RunError(f"a {run_type} run takes a {kind.request.__name__}, not {request!r}")
        self._check_runner()
        run_id = new_run_id()
        place = Place(self.home, run_id, runs_dir(self.home) / run_id)
        async with self._naming:  # the check and the record together: no two take a name
            try:
                plan = await asyncio.to_thread(kind.plan, request, place)
            except RunRefused as refused:
                raise RunError(str(refused)) from refused
            if kind.makes_model and plan.model_name is not None:
                await self._check_name_free(plan.model_name)
            return await self._record(kind, place, plan)

    async def _check_name_free(self, name: str) -> None:
        for run in await self.store.unfinished_runs():
            other = self.run_types.get(run["run_type"])
            if other is not None and other.makes_model and run["model_name"] == name:
                raise RunError(
                    f"run {run['run_id']} ({run['status']}) will make a model named "
                    f"{name!r}: choose another name, or cancel that run"
                )

    async def _record(self, kind: RunType, place: Place, plan: Plan) -> str:
        run_id, run_dir, spec = place.run_id, place.run_dir, plan.spec
        stored = {
            **spec.to_dict(),
            "run_id": run_id,
            "run_type": kind.name,
            "run_dir": str(run_dir),
            OWNER_FIELD: os.getpid(),
        }
        try:
            run_dir.mkdir(parents=True, exist_ok=True)  # its cancel file goes here
            await self.store.create_run(run_id, kind.name, spec.subject, stored, plan.model_name)
        except (OSError, sqlite3.Error) as error:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # just made, empty: nothing of a run not on record
            _remove_empty_outputs(spec)
            if is_disk_full(error):
                raise DiskFull(
                    database_path(self.home) if isinstance(error, sqlite3.Error) else run_dir
                ) from error
            raise
        self._seq[run_id] = 0
        self.emit(run_id, RunQueued(kind.name, spec.subject, _public_config(spec)))
        await self.recorder.flush()  # once submit returns, the run is on record
        self.runner.submit(Job(run_id, kind, spec, RunContext(run_id, run_dir)))
        return run_id

    async def resume(self, run_id: str) -> None:
        """Go on from the run's last checkpoint, same run id, seq continuing."""
        run = await self._run(run_id)
        if self.runner.is_active(run_id):
            raise RunError(f"run {run_id} is already {run['status']}")
        if run["status"] == "completed":
            raise RunError(f"run {run_id} already completed")
        owner = owner_of(run)
        if run["status"] in UNFINISHED_STATUSES and owner != os.getpid() and not orphaned(run):
            raise RunError(
                f"run {run_id} is {run['status']} in another distill process"
                f" (pid {owner}): follow or cancel it there"
            )
        kind = self._run_type(run["run_type"])
        self._check_runner()
        spec = kind.spec.from_dict(run["spec"])
        run_dir = Path(run["spec"]["run_dir"])
        resume = (run_dir / CHECKPOINT_NAME).exists()  # else it never finished an epoch
        # Owner first, then the seq: a reader that found the run orphaned under its old
        # owner either ended it before this (its event is counted in last_seq) or, the
        # owner having changed, leaves it alone (store.interrupt_orphan).
        await self.store.set_owner(run_id, os.getpid())
        self._seq[run_id] = await self.store.last_seq(run_id)
        self._finished.discard(run_id)
        self.emit(run_id, RunQueued(kind.name, spec.subject, _public_config(spec)))
        await self.recorder.flush()
        self.runner.submit(Job(run_id, kind, spec, RunContext(run_id, run_dir, resume)))

    async def cancel(self, run_id: str, keep_best: bool = False) -> None:
        """Stop a run: a queued one now, a running one at its next step. A running one
        checkpoints for a resume, or, with `keep_best`, saves its best epoch so far as its
        model and ends completed (a run with no epoch finished yet only checkpoints).
        (On a Dask cluster the worker sees only the stop: it checkpoints.)"""
        run = await self._run(run_id)
        if keep_best and run["status"] in UNFINISHED_STATUSES:
            (Path(run["spec"]["run_dir"]) / KEEP_BEST_FILE).touch()  # before the stop
        if not self.runner.cancel(run_id):
            if run["status"] in UNFINISHED_STATUSES:
                # Another process's core runs it: its worker watches the same cancel file.
                (Path(run["spec"]["run_dir"]) / CANCEL_FILE).touch()
            else:
                raise RunError(f"run {run_id} is not running (it is {run['status']})")

    async def follow(self, run_id: str, after_seq: int = 0) -> AsyncIterator[Event]:
        """Every event after `after_seq`, from the store then live; ends at the run's end.

        Subscribes before reading the store, so an event committed in between is caught
        live; duplicates are dropped by seq. The store is read a page at a time, so a
        follower far behind holds one page, not the run's history. A subscription that
        fell behind is reopened and the gap re-read from the store.
        """
        await self._run(run_id)
        await self.settle()  # a dead process's run would never end here
        last, last_kind = after_seq, None
        while True:
            sub = self.bus.subscribe(run_id)
            try:
                # The status is read before the events: a run's end is committed with its
                # status, so a run already ended here has every event in the pages below.
                # (Read after them, an end committed in between would be skipped.)
                ended = (await self._run(run_id))["status"] not in UNFINISHED_STATUSES
                while True:
                    page = await self.store.events(run_id, after_seq=last, limit=FOLLOW_PAGE)
                    for event in page:
                        yield event
                        last, last_kind = event.seq, event.kind
                    if len(page) < FOLLOW_PAGE:
                        break
                if last_kind in TERMINAL_KINDS:
                    return  # the latest attempt ended; a resume would have queued after it
                if ended:
                    return
                while True:
                    try:
                        event = await sub.get()
                    except SubscriptionClosed as closed:
                        if closed.reason != FELL_BEHIND:
                            return  # the core is shutting the stream down
                        break  # fell behind: re-read the gap from the store
                    if event.seq <= last:
                        continue
                    yield event
                    last, last_kind = event.seq, event.kind
                    if event.kind in TERMINAL_KINDS:
                        return
            finally:
                self.bus.unsubscribe(sub)

    # -- events -------------------------------------------------------------------------

    def _run_type(self, run_type: str) -> RunType:
        if run_type not in self.run_types:
            runs = ", ".join(sorted(self.run_types)) or "nothing"
            raise RunError(f"this distill cannot run {run_type!r} runs (it runs {runs})")
        return self.run_types[run_type]

    def _check_runner(self) -> None:
        reason = self.runner.unavailable()
        if reason is not None:
            raise RunError(reason)

    def emit(self, run_id: str, payload: Payload) -> None:
        """Record an event of the run, as a worker's events arrive: its next seq, then
        the recorder, then the bus. Public for what reports on a run without a worker
        (the tests, the dashboard benchmark); the run must exist in the store."""
        self._emit_raw(run_id, payload.kind, payload.to_dict())

    def _emit_raw(self, run_id: str, kind: str, payload: dict[str, Any]) -> None:
        seq = self._seq.get(run_id, 0) + 1
        self._seq[run_id] = seq
        if kind in TERMINAL_KINDS:
            self._finished.add(run_id)
        self.recorder.submit(Event(run_id, seq, kind, payload, time.time()))

    def _on_worker_messages(self, batch: list[tuple[str, str, dict]]) -> None:
        for run_id, kind, payload in batch:
            if kind == WORKER_DIED:
                if run_id not in self._finished:
                    checkpoint = self._checkpoint_of(run_id)
                    self.emit(run_id, RunFailed(payload["error"], checkpoint))
                continue
            if kind == RUNNER_LOST:
                if run_id not in self._finished:
                    checkpoint = self._checkpoint_of(run_id)
                    self.emit(run_id, RunInterrupted(payload["reason"], checkpoint))
                continue
            self._emit_raw(run_id, kind, payload)

    def _cancelled_while_queued(self, run_id: str) -> None:
        self.emit(run_id, RunCancelled(epoch=0, checkpoint_path=self._checkpoint_of(run_id)))

    def _checkpoint_of(self, run_id: str) -> str | None:
        path = runs_dir(self.home) / run_id / CHECKPOINT_NAME
        return str(path) if path.exists() else None

    async def settle(self) -> None:
        """Runs whose owning process is gone become interrupted now (core/owners.py).

        Whatever lists or shows runs calls this first. The endings are stored, then
        published, so a page following such a run sees it end.
        """
        self._published_endings(await interrupt_orphans(self.store))

    async def _interrupt_orphans(self) -> None:
        """At start-up: runs a killed core left "queued" or "running" become interrupted."""
        self._published_endings(await interrupt_orphans(self.store, starting=True))

    def _published_endings(self, events: list[Event]) -> None:
        for event in events:
            self._seq[event.run_id] = max(self._seq.get(event.run_id, 0), event.seq)
        self.bus.publish_many(events)

    def _on_write_error(self, error: BaseException) -> None:
        self.last_write_error = str(error)
        print(f"distill: could not write events to SQLite, retrying: {error}", file=sys.stderr)

    async def _run(self, run_id: str) -> dict[str, Any]:
        run = await self.store.run(run_id)
        if run is None:
            raise RunError(f"no run {run_id!r}")
        return run


def _public_config(spec: RunSpec) -> dict[str, Any]:
    """What a run's queued event says it was asked for: its job, less the folders of
    its paths that only say where (the dataset is the run's subject)."""
    hidden = {
        name for name, role in spec.paths.items() if role in (PathRole.DATASET, PathRole.SCRATCH)
    }
    return {k: v for k, v in spec.to_dict().items() if k not in hidden}


def _remove_empty_outputs(spec: RunSpec) -> None:
    """A run not put on record leaves no folder its plan made (generate's, say)."""
    for name, role in spec.paths.items():
        if role is PathRole.OUTPUT:
            with contextlib.suppress(OSError):
                Path(getattr(spec, name)).rmdir()
