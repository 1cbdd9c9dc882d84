"""The store: distill's one SQLite file, reached through aiosqlite.

The `events` table is the record: every event of every run, once, in `seq` order. The
other tables are projections of it that make pages fast (a run's page is a query, never
a replay of its history in Python). `append` writes a batch of events and updates the
projections from the same events in one transaction, so the two never disagree.

Writes go through one connection and one lock, so transactions never interleave. Reads
use a second, read-only connection: in WAL mode a reader sees the last commit and never
waits behind the writer's thread.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from distill.core.store.connection import (
    Statement,
    connect,
    enable_wal,
    execute,
    fetch,
    rollback,
    to_json,
)
from distill.core.store.errors import StoreClosed, UnknownRun, check_status
from distill.core.store.migrations import migrate, refuse_newer
from distill.core.store.projections import appending
from distill.events import UNFINISHED_STATUSES, VAL_SPLIT, Event, RunInterrupted

OWNER_FIELD = "core_pid"  # in a run's spec: the process whose core runs it (core/owners.py)
T = TypeVar("T")


class Store:
    """One SQLite file: the event record and the tables the pages read."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self._writer: aiosqlite.Connection | None = writer
        self._reader: aiosqlite.Connection | None = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        """Open (or create) the database at `path` and bring its schema up to date.

        Raises SchemaTooNew, leaving the file untouched, when a newer distill wrote it.
        """
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await connect(path)
        try:
            await refuse_newer(writer, path)
            await enable_wal(writer, path)
            await writer.execute("PRAGMA synchronous = NORMAL")  # durable at WAL checkpoints
            await writer.execute("PRAGMA foreign_keys = ON")
            await migrate(writer)
            reader = await connect(path)
        except BaseException:
            await writer.close()
            raise
        try:
            await reader.execute("PRAGMA query_only = ON")
        except BaseException:
            await reader.close()
            await writer.close()
            raise
        return cls(path, writer, reader)

    async def close(self) -> None:
        """Close both connections; closing twice is fine."""
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        async with self._write_lock:  # let a write in progress finish
            if writer is not None:
                await writer.close()
        if reader is not None:
            await reader.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writes -------------------------------------------------------------------------

    async def create_run(
        self,
        run_id: str,
        run_type: str,
        dataset: str,
        spec: dict[str, Any],
        model_name: str | None = None,
    ) -> None:
        """Add a run, status "queued", before any of its events are appended."""
        await self._write(
            [
                (
                    "INSERT INTO runs (run_id, run_type, status, dataset, model_name, created, spec)"
                    " VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                    (run_id, run_type, dataset, model_name, time.time(), to_json(spec)),
                )
            ]
        )

    async def append(self, events: Sequence[Event]) -> None:
        """Store `events` and update the projections from them, in one transaction.

        A (run_id, seq) already stored, or an event of a run never created, raises
        sqlite3.IntegrityError; on any error nothing of the batch is kept.
        """
        if events:
            await self._write(appending(events))

    async def interrupt_orphan(
        self, run_id: str, owner: int | None, payload: RunInterrupted
    ) -> Event | None:
        """Append `payload` as the run's next event, in one transaction, if the run is
        still unfinished and still owned by `owner`; the event, or None if it was not.

        For runs whose owner is gone (core/owners.py): the check and the write are one
        transaction, so of two processes that find the same orphan only one ends it, and
        a run resumed by another core in between (a new owner) is left alone.
        """

        async def end(db: aiosqlite.Connection) -> Event | None:
            rows = await fetch(
                db,
                f"SELECT status, json_extract(spec, '$.{OWNER_FIELD}') AS owner,"
                " (SELECT MAX(seq) FROM events WHERE run_id = :run_id) AS seq"
                " FROM runs WHERE run_id = :run_id",
                {"run_id": run_id},
            )
            if not rows or rows[0]["status"] not in UNFINISHED_STATUSES:
                return None
            if rows[0]["owner"] != owner:
                return None
            event = Event(run_id, (rows[0]["seq"] or 0) + 1, payload.kind, payload.to_dict())
            await execute(db, appending([event]))
            return event

        return await self._transaction(end)

    async def set_owner(self, run_id: str, pid: int) -> None:
        """Record the process whose core now runs the run (a resume changes it)."""
        sql = f"UPDATE runs SET spec = json_set(spec, '$.{OWNER_FIELD}', ?) WHERE run_id = ?"
        if await self._write([(sql, (pid, run_id))]) == 0:
            raise UnknownRun(f"no run {run_id!r}")

    async def set_status(self, run_id: str, status: str, error: str | None = None) -> None:
        """Set a run's status without an event; a finished status also stamps `finished`.

        For repairs only: the core reports what happens to a run with events, so that
        the record tells the whole story.
        """
        check_status(status)
        finished = None if status in UNFINISHED_STATUSES else time.time()
        changed = await self._write(
            [
                (
                    "UPDATE runs SET status = ?, error = ?, finished = ? WHERE run_id = ?",
                    (status, error, finished, run_id),
                )
            ]
        )
        if changed == 0:
            raise UnknownRun(f"no run {run_id!r}")

    async def rename_model(self, name: str, new_name: str, new_path: str) -> None:
        """The library renamed a model's file: its row and the runs that made it follow."""
        await self._write(
            [
                (
                    "UPDATE models SET name = ?, path = ? WHERE name = ?",
                    (new_name, new_path, name),
                ),
                (
                    "UPDATE runs SET model_name = ?, model_path = ? WHERE model_name = ?",
                    (new_name, new_path, name),
                ),
            ]
        )

    async def forget_model(self, name: str) -> None:
        """The library deleted a model's file; its runs keep their history."""
        await self._write([("DELETE FROM models WHERE name = ?", (name,))])

    async def _write(self, statements: Sequence[Statement]) -> int:
        """Run statements in one transaction on the writer; return the rows changed.

        A statement whose parameters are a list of tuples runs as one `executemany`.
        On any error the transaction is rolled back and the error propagates.
        """
        return await self._transaction(lambda db: execute(db, statements))

    async def _transaction(self, work: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """`work(writer)` inside BEGIN IMMEDIATE ... COMMIT; rolled back on any error."""
        async with self._write_lock:
            db = self._connection(self._writer)
            try:
                await db.execute("BEGIN IMMEDIATE")  # inside: a cancelled BEGIN still runs
                result = await work(db)
                await db.execute("COMMIT")
            except BaseException:
                await rollback(db)
                raise
            return result

    # -- reads --------------------------------------------------------------------------

    async def events(
        self, run_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[Event]:
        """A run's events with seq > after_seq, in seq order."""
        rows = await self._read(
            "SELECT run_id, seq, kind, payload, ts FROM events"
            " WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (run_id, after_seq, -1 if limit is None else limit),
        )
        return [
            Event(row["run_id"], row["seq"], row["kind"], json.loads(row["payload"]), row["ts"])
            for row in rows
        ]

    async def events_of_kind(self, run_id: str, kind: str) -> list[Event]:
        """A run's events of one kind, in seq order (the decoder stage's steps, charted)."""
        rows = await self._read(
            "SELECT run_id, seq, kind, payload, ts FROM events"
            " WHERE run_id = ? AND kind = ? ORDER BY seq",
            (run_id, kind),
        )
        return [
            Event(row["run_id"], row["seq"], row["kind"], json.loads(row["payload"]), row["ts"])
            for row in rows
        ]

    async def latest_event(self, run_id: str, *kinds: str) -> Event | None:
        """The run's newest event of these kinds: a page shows the latest scan, preview,
        or step (an epoch's, or the decoder stage's after the epochs)."""
        marks = ", ".join("?" for _ in kinds)
        rows = await self._read(
            "SELECT run_id, seq, kind, payload, ts FROM events"
            f" WHERE run_id = ? AND kind IN ({marks}) ORDER BY seq DESC LIMIT 1",
            (run_id, *kinds),
        )
        if not rows:
            return None
        row = rows[0]
        return Event(row["run_id"], row["seq"], row["kind"], json.loads(row["payload"]), row["ts"])

    async def last_seq(self, run_id: str) -> int:
        """The highest seq stored for the run; 0 when it has none."""
        rows = await self._read("SELECT MAX(seq) AS seq FROM events WHERE run_id = ?", (run_id,))
        return rows[0]["seq"] or 0

    async def run(self, run_id: str) -> dict[str, Any] | None:
        rows = await self._read("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return _run_row(rows[0]) if rows else None

    async def known_runs(self, run_ids: Iterable[str]) -> set[str]:
        """Which of these run ids this store holds, in one query."""
        wanted = sorted(set(run_ids))
        if not wanted:
            return set()
        marks = ", ".join("?" * len(wanted))
        rows = await self._read(f"SELECT run_id FROM runs WHERE run_id IN ({marks})", wanted)
        return {row["run_id"] for row in rows}

    async def runs(
        self,
        status: str | None = None,
        dataset: str | None = None,
        limit: int = 100,
        offset: int = 0,
        model_name: str | None = None,
        run_type: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs newest first, optionally only those with a status, of a dataset, of a
        model (the runs that made it or trained its prior) or of a type.

        An unknown status raises UnknownStatus: a typo is an error, not an empty list.
        """
        if status is not None:
            check_status(status)
        where, params = [], []
        for column, value in (
            ("status", status),
            ("dataset", dataset),
            ("model_name", model_name),
            ("run_type", run_type),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._read(
            f"SELECT * FROM runs {clause} ORDER BY created DESC, run_id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [_run_row(row) for row in rows]

    async def unfinished_runs(self) -> list[dict[str, Any]]:
        """Runs still queued or running, oldest first (core/owners.py checks their owners)."""
        marks = ", ".join("?" * len(UNFINISHED_STATUSES))
        rows = await self._read(
            f"SELECT * FROM runs WHERE status IN ({marks}) ORDER BY created", UNFINISHED_STATUSES
        )
        return [_run_row(row) for row in rows]

    async def epoch_metrics(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._read(
            "SELECT * FROM epoch_metrics WHERE run_id = ? ORDER BY epoch", (run_id,)
        )
        return [dict(row) for row in rows]

    async def codebook_health(self, run_id: str, split: str = VAL_SPLIT) -> list[dict[str, Any]]:
        """Every epoch's per-level health on one split, ordered by epoch then level."""
        rows = await self._read(
            "SELECT * FROM codebook_health WHERE run_id = ? AND split = ? ORDER BY epoch, level",
            (run_id, split),
        )
        return [dict(row) for row in rows]

    async def codebook_warnings(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._read(
            "SELECT * FROM codebook_warnings WHERE run_id = ? ORDER BY seq", (run_id,)
        )
        return [dict(row) for row in rows]

    async def prior_epoch_metrics(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._read(
            "SELECT * FROM prior_epoch_metrics WHERE run_id = ? ORDER BY epoch", (run_id,)
        )
        return [dict(row) for row in rows]

    async def memorization_warnings(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._read(
            "SELECT * FROM memorization_warnings WHERE run_id = ? ORDER BY seq", (run_id,)
        )
        return [dict(row) for row in rows]

    async def models(self) -> list[dict[str, Any]]:
        rows = await self._read("SELECT * FROM models ORDER BY created DESC, name")
        return [dict(row) for row in rows]

    async def datasets(self) -> list[dict[str, Any]]:
        rows = await self._read("SELECT * FROM datasets ORDER BY last_scanned DESC, dataset")
        return [dict(row) for row in rows]

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return await fetch(self._connection(self._reader), sql, params)

    @staticmethod
    def _connection(db: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if db is None:
            raise StoreClosed("the store is closed")
        return db


def _run_row(row: sqlite3.Row) -> dict[str, Any]:
    run = dict(row)
    run["spec"] = json.loads(run["spec"])
    return run
