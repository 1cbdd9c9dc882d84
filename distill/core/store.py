"""The store: distill's one SQLite file, reached through aiosqlite.

The `events` table is the record: every event of every run, once, in `seq` order. The
other tables are projections of it that make pages fast (a run's page is a query, never
a replay of its history in Python). `append` writes a batch of events and updates the
projections from the same events in one transaction, so the two never disagree.

Writes go through one connection and one lock, so transactions never interleave. Reads
use a second, read-only connection: in WAL mode a reader sees the last commit and never
waits behind the writer's thread. aiosqlite runs one thread per connection, so a round
trip costs the same for one row or many: events go in with one `executemany` per batch
(one awaited `execute` per row manages about 13k rows/s, `executemany` about 290k).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from distill.events import (
    RUN_STATUSES,
    TRAIN_SPLIT,
    UNFINISHED_STATUSES,
    VAL_SPLIT,
    CheckpointSaved,
    CodebookWarning,
    CopiesMeasured,
    DatasetScanned,
    EpochMetrics,
    Event,
    LevelHealth,
    MemorizationWarning,
    ModelSaved,
    PriorEpochMetrics,
    PriorSaved,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunInterrupted,
    RunQueued,
    RunStarted,
)

logger = logging.getLogger(__name__)

OWNER_FIELD = "core_pid"  # in a run's spec: the process whose core runs it (core/owners.py)
BUSY_TIMEOUT_MS = 5000  # how long a write waits for another process's write lock

# Column names are the event schema's field names, so a quantity has one name everywhere.
EPOCH_COLUMNS = tuple(
    f.name for f in dataclasses.fields(EpochMetrics) if f.name not in ("levels", "train_levels")
)
HEALTH_COLUMNS = tuple(f.name for f in dataclasses.fields(LevelHealth))
PRIOR_EPOCH_COLUMNS = tuple(f.name for f in dataclasses.fields(PriorEpochMetrics))
MEMORIZATION_COLUMNS = tuple(f.name for f in dataclasses.fields(MemorizationWarning))

# Append-only: MIGRATIONS[i] takes the schema from version i to i + 1. Never edit one
# that has shipped; add the next. A JSON column is declared TEXT: a declared type of
# "JSON" would give it NUMERIC affinity in SQLite.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        run_type TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN
            ('queued', 'running', 'completed', 'failed', 'cancelled', 'interrupted')),
        dataset TEXT NOT NULL,
        model_name TEXT,
        model_path TEXT,
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        epochs INTEGER,
        epoch INTEGER,              -- the last finished epoch, 0-based
        best_epoch INTEGER,
        final_val_loss REAL,        -- the val_loss of best_epoch
        worst_utilization REAL,     -- the lowest level utilization of best_epoch (training files from 3)
        error TEXT,
        checkpoint_path TEXT,
        spec TEXT NOT NULL DEFAULT '{}',  -- JSON: what the run was asked to do
        last_seq INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_by_created ON runs (created);
    CREATE INDEX runs_by_status ON runs (status, created);
    CREATE INDEX runs_by_dataset ON runs (dataset, created);

    -- The record. Its primary key is also the index that reads a run from a seq on.
    CREATE TABLE events (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL CHECK (seq > 0),
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,  -- JSON
        PRIMARY KEY (run_id, seq)
    );

    -- Metric columns allow NULL: SQLite stores a NaN loss as NULL.
    CREATE TABLE epoch_metrics (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        epoch INTEGER NOT NULL,
        epochs INTEGER,
        train_loss REAL,
        train_recon_loss REAL,
        train_commit_loss REAL,
        val_loss REAL,
        val_recon_loss REAL,
        val_commit_loss REAL,
        best_epoch INTEGER,
        seconds REAL,
        PRIMARY KEY (run_id, epoch)
    );

    CREATE TABLE codebook_health (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        epoch INTEGER NOT NULL,
        level INTEGER NOT NULL,
        codebook_size INTEGER,
        utilization REAL,
        perplexity REAL,
        dead_codes INTEGER,
        error_reduction REAL,
        PRIMARY KEY (run_id, epoch, level)
    );

    CREATE TABLE warnings (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        epoch INTEGER,
        level INTEGER,
        utilization REAL,
        threshold REAL,
        message TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );

    CREATE TABLE datasets (
        path TEXT PRIMARY KEY,
        files_used INTEGER NOT NULL,
        files_skipped INTEGER NOT NULL,
        total_seconds REAL,
        last_scanned REAL NOT NULL
    );

    CREATE TABLE models (
        name TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        run_id TEXT REFERENCES runs (run_id) ON DELETE SET NULL,
        created REAL NOT NULL
    );
    CREATE INDEX models_by_run ON models (run_id);
    """,
    # 2: priors. Their epochs and warnings have tables of their own, named by the event
    # schema's fields like the VQ-VAE's; a prior run's best perplexity sits on its run.
    """
    CREATE TABLE prior_epoch_metrics (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        epoch INTEGER NOT NULL,
        epochs INTEGER,
        train_loss REAL,
        val_loss REAL,
        val_perplexity REAL,
        best_epoch INTEGER,
        seconds REAL,
        PRIMARY KEY (run_id, epoch)
    );

    CREATE TABLE memorization_warnings (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        epoch INTEGER,
        val_perplexity REAL,
        threshold REAL,
        message TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );

    ALTER TABLE runs ADD COLUMN final_val_perplexity REAL;  -- prior runs: of best_epoch
    """,
    # 3: health is counted on the training files too, over audible vectors, with their count.
    """
    CREATE TABLE codebook_health_by_split (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        epoch INTEGER NOT NULL,
        split TEXT NOT NULL,  -- 'val' (held-out files) or 'train'
        level INTEGER NOT NULL,
        codebook_size INTEGER,
        utilization REAL,
        perplexity REAL,
        dead_codes INTEGER,
        error_reduction REAL,
        vectors INTEGER,
        PRIMARY KEY (run_id, epoch, split, level)
    );
    INSERT INTO codebook_health_by_split
        (run_id, epoch, split, level, codebook_size, utilization, perplexity, dead_codes,
         error_reduction, vectors)
        SELECT run_id, epoch, 'val', level, codebook_size, utilization, perplexity,
               dead_codes, error_reduction, 0
        FROM codebook_health;
    DROP TABLE codebook_health;
    ALTER TABLE codebook_health_by_split RENAME TO codebook_health;
    ALTER TABLE epoch_metrics ADD COLUMN val_mel_error REAL
    """,
    # 4: memorization has three causes (training/memorization.py); the copy rate of a
    # prior's kept weights sits on its run.
    """
    ALTER TABLE prior_epoch_metrics ADD COLUMN train_perplexity REAL;
    ALTER TABLE memorization_warnings ADD COLUMN cause TEXT NOT NULL DEFAULT 'val_perplexity';
    ALTER TABLE memorization_warnings ADD COLUMN measured REAL;
    ALTER TABLE memorization_warnings ADD COLUMN train_perplexity REAL;
    UPDATE memorization_warnings SET measured = val_perplexity;
    ALTER TABLE runs ADD COLUMN copy_rate REAL;
    ALTER TABLE runs ADD COLUMN val_mel_error REAL;  -- VQ-VAE runs: of best_epoch
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """Something distill's SQLite file cannot do."""


class SchemaTooNew(StoreError):
    """The database was written by a newer distill than this one."""


class UnknownRun(StoreError, LookupError):
    """No run has that id."""


class StoreClosed(StoreError):
    """The store was used after `close()`."""


class UnknownStatus(StoreError, ValueError):
    """A status that is none of RUN_STATUSES."""


def check_status(status: str) -> str:
    """`status` if it is a run status; else UnknownStatus, naming the ones there are."""
    if status not in RUN_STATUSES:
        raise UnknownStatus(f"unknown status {status!r}: one of {', '.join(RUN_STATUSES)}")
    return status


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
        writer = await _connect(path)
        try:
            await _refuse_newer(writer, path)
            await _enable_wal(writer, path)
            await writer.execute("PRAGMA synchronous = NORMAL")  # durable at WAL checkpoints
            await writer.execute("PRAGMA foreign_keys = ON")
            await _migrate(writer)
            reader = await _connect(path)
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
                    (run_id, run_type, dataset, model_name, time.time(), _to_json(spec)),
                )
            ]
        )

    async def append(self, events: Sequence[Event]) -> None:
        """Store `events` and update the projections from them, in one transaction.

        A (run_id, seq) already stored, or an event of a run never created, raises
        sqlite3.IntegrityError; on any error nothing of the batch is kept.
        """
        if events:
            await self._write(_appending(events))

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
            rows = await db.execute_fetchall(
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
            await _execute(db, _appending([event]))
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

    async def _write(self, statements: Sequence[_Statement]) -> int:
        """Run statements in one transaction on the writer; return the rows changed.

        A statement whose parameters are a list of tuples runs as one `executemany`.
        On any error the transaction is rolled back and the error propagates.
        """
        return await self._transaction(lambda db: _execute(db, statements))

    async def _transaction(self, work: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """`work(writer)` inside BEGIN IMMEDIATE ... COMMIT; rolled back on any error."""
        async with self._write_lock:
            db = self._connection(self._writer)
            try:
                await db.execute("BEGIN IMMEDIATE")  # inside: a cancelled BEGIN still runs
                result = await work(db)
                await db.execute("COMMIT")
            except BaseException:
                await _rollback(db)
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

    async def latest_event(self, run_id: str, kind: str) -> Event | None:
        """The run's newest event of one kind: a page shows the latest scan, step, preview."""
        rows = await self._read(
            "SELECT run_id, seq, kind, payload, ts FROM events"
            " WHERE run_id = ? AND kind = ? ORDER BY seq DESC LIMIT 1",
            (run_id, kind),
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

    async def warnings(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._read("SELECT * FROM warnings WHERE run_id = ? ORDER BY seq", (run_id,))
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
        rows = await self._read("SELECT * FROM datasets ORDER BY last_scanned DESC, path")
        return [dict(row) for row in rows]

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list(await self._connection(self._reader).execute_fetchall(sql, params))

    @staticmethod
    def _connection(db: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if db is None:
            raise StoreClosed("the store is closed")
        return db


# -- projections: what each kind of event changes besides the record -----------------------

_Statement = tuple[str, Sequence[Any] | list[Sequence[Any]]]
T = TypeVar("T")


def _appending(events: Sequence[Event]) -> list[_Statement]:
    """The statements that store `events` and update the projections from them."""
    rows = [(e.run_id, e.seq, e.ts, e.kind, _to_json(e.payload)) for e in events]
    statements: list[_Statement] = [
        ("INSERT INTO events (run_id, seq, ts, kind, payload) VALUES (?, ?, ?, ?, ?)", rows)
    ]
    last_seq: dict[str, int] = {}
    for event in events:
        project = _PROJECTIONS.get(event.kind)
        if project is not None:
            statements.extend(project(event))
        last_seq[event.run_id] = max(last_seq.get(event.run_id, 0), event.seq)
    statements.append(
        (
            "UPDATE runs SET last_seq = MAX(last_seq, ?) WHERE run_id = ?",
            [(seq, run_id) for run_id, seq in last_seq.items()],
        )
    )
    return statements


async def _execute(db: aiosqlite.Connection, statements: Sequence[_Statement]) -> int:
    """Run statements on `db` (a list of parameter tuples: one executemany); rows changed."""
    changed = 0
    for sql, params in statements:
        if isinstance(params, list):
            cursor = await db.executemany(sql, params)
        else:
            cursor = await db.execute(sql, params)
        changed += max(cursor.rowcount, 0)
    return changed


_EPOCH_UPSERT = (
    f"INSERT OR REPLACE INTO epoch_metrics (run_id, {', '.join(EPOCH_COLUMNS)})"
    f" VALUES (?{', ?' * len(EPOCH_COLUMNS)})"
)
_HEALTH_INSERT = (
    f"INSERT INTO codebook_health (run_id, epoch, split, {', '.join(HEALTH_COLUMNS)})"
    f" VALUES (?, ?, ?{', ?' * len(HEALTH_COLUMNS)})"
)
# The best epoch's loss, mel error and weakest level (on the training files, which the
# low-utilization warning judges), read back from the rows just written.
_RUN_RESULT = """
    UPDATE runs SET
        best_epoch = :best_epoch,
        final_val_loss = (SELECT val_loss FROM epoch_metrics
                          WHERE run_id = :run_id AND epoch = :best_epoch),
        val_mel_error = (SELECT val_mel_error FROM epoch_metrics
                         WHERE run_id = :run_id AND epoch = :best_epoch),
        worst_utilization = (SELECT MIN(utilization) FROM codebook_health
                             WHERE run_id = :run_id AND epoch = :best_epoch
                             AND split = :split)
    WHERE run_id = :run_id
"""


def _run_queued(e: Event) -> list[_Statement]:
    # Also a resume: the run is waiting again, its last ending no longer applies.
    sql = "UPDATE runs SET status = 'queued', finished = NULL, error = NULL WHERE run_id = ?"
    return [(sql, (e.run_id,))]


def _run_started(e: Event) -> list[_Statement]:
    p: RunStarted = e.typed()
    sql = (
        "UPDATE runs SET status = 'running', started = ?, finished = NULL, error = NULL,"
        " epochs = ? WHERE run_id = ?"
    )
    return [(sql, (e.ts, p.epochs, e.run_id))]


def _epoch_metrics(e: Event) -> list[_Statement]:
    # A resumed run may repeat an epoch its last attempt did not checkpoint: latest wins.
    p: EpochMetrics = e.typed()
    values = (e.run_id, *(getattr(p, name) for name in EPOCH_COLUMNS))
    levels = [
        (e.run_id, p.epoch, split, *(getattr(level, name) for name in HEALTH_COLUMNS))
        for split, health in ((VAL_SPLIT, p.levels), (TRAIN_SPLIT, p.train_levels))
        for level in health
    ]
    return [
        (_EPOCH_UPSERT, values),
        ("DELETE FROM codebook_health WHERE run_id = ? AND epoch = ?", (e.run_id, p.epoch)),
        (_HEALTH_INSERT, levels),
        (
            "UPDATE runs SET epoch = ?, epochs = ? WHERE run_id = ?",
            (p.epoch, p.epochs, e.run_id),
        ),
        (_RUN_RESULT, {"run_id": e.run_id, "best_epoch": p.best_epoch, "split": TRAIN_SPLIT}),
    ]


_PRIOR_EPOCH_UPSERT = (
    f"INSERT OR REPLACE INTO prior_epoch_metrics (run_id, {', '.join(PRIOR_EPOCH_COLUMNS)})"
    f" VALUES (?{', ?' * len(PRIOR_EPOCH_COLUMNS)})"
)
_PRIOR_RUN_RESULT = """
    UPDATE runs SET
        epoch = :epoch, epochs = :epochs, best_epoch = :best_epoch,
        final_val_loss = (SELECT val_loss FROM prior_epoch_metrics
                          WHERE run_id = :run_id AND epoch = :best_epoch),
        final_val_perplexity = (SELECT val_perplexity FROM prior_epoch_metrics
                                WHERE run_id = :run_id AND epoch = :best_epoch)
    WHERE run_id = :run_id
"""


def _prior_epoch_metrics(e: Event) -> list[_Statement]:
    # Like _epoch_metrics: a repeated epoch (after a resume) replaces its row.
    p: PriorEpochMetrics = e.typed()
    values = (e.run_id, *(getattr(p, name) for name in PRIOR_EPOCH_COLUMNS))
    result = {"run_id": e.run_id, "epoch": p.epoch, "epochs": p.epochs, "best_epoch": p.best_epoch}
    return [(_PRIOR_EPOCH_UPSERT, values), (_PRIOR_RUN_RESULT, result)]


def _memorization_warning(e: Event) -> list[_Statement]:
    p: MemorizationWarning = e.typed()
    sql = (
        f"INSERT INTO memorization_warnings (run_id, seq, {', '.join(MEMORIZATION_COLUMNS)})"
        f" VALUES (?, ?{', ?' * len(MEMORIZATION_COLUMNS)})"
    )
    return [(sql, (e.run_id, e.seq, *(getattr(p, name) for name in MEMORIZATION_COLUMNS)))]


def _copies_measured(e: Event) -> list[_Statement]:
    p: CopiesMeasured = e.typed()
    return [("UPDATE runs SET copy_rate = ? WHERE run_id = ?", (p.copy_rate, e.run_id))]


def _prior_saved(e: Event) -> list[_Statement]:
    # The model row keeps the run that trained the model; the prior's run points at it.
    p: PriorSaved = e.typed()
    sql = "UPDATE runs SET model_name = ?, model_path = ? WHERE run_id = ?"
    return [(sql, (p.name, p.path, e.run_id))]


def _codebook_warning(e: Event) -> list[_Statement]:
    p: CodebookWarning = e.typed()
    sql = (
        "INSERT INTO warnings (run_id, seq, epoch, level, utilization, threshold, message)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    return [(sql, (e.run_id, e.seq, p.epoch, p.level, p.utilization, p.threshold, p.message))]


def _dataset_scanned(e: Event) -> list[_Statement]:
    p: DatasetScanned = e.typed()
    sql = (
        "INSERT INTO datasets (path, files_used, files_skipped, total_seconds, last_scanned)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET"
        " files_used = excluded.files_used, files_skipped = excluded.files_skipped,"
        " total_seconds = excluded.total_seconds, last_scanned = excluded.last_scanned"
    )
    values = (p.dataset, len(p.files_used), len(p.files_skipped), p.total_seconds, e.ts)
    return [(sql, values)]


def _checkpoint_saved(e: Event) -> list[_Statement]:
    p: CheckpointSaved = e.typed()
    return [("UPDATE runs SET checkpoint_path = ? WHERE run_id = ?", (p.path, e.run_id))]


def _model_saved(e: Event) -> list[_Statement]:
    p: ModelSaved = e.typed()
    upsert = (
        "INSERT INTO models (name, path, run_id, created) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET"
        " path = excluded.path, run_id = excluded.run_id, created = excluded.created"
    )
    return [
        (upsert, (p.name, p.path, e.run_id, e.ts)),
        (
            "UPDATE runs SET model_name = ?, model_path = ? WHERE run_id = ?",
            (p.name, p.path, e.run_id),
        ),
    ]


def _run_completed(e: Event) -> list[_Statement]:
    p: RunCompleted = e.typed()
    sql = (
        "UPDATE runs SET status = 'completed', finished = ?, error = NULL,"
        " model_path = COALESCE(NULLIF(?, ''), model_path) WHERE run_id = ?"
    )
    return [
        (sql, (e.ts, p.model_path, e.run_id)),
        (_RUN_RESULT, {"run_id": e.run_id, "best_epoch": p.best_epoch, "split": TRAIN_SPLIT}),
        # The event's own number wins over the projection when both exist.
        ("UPDATE runs SET final_val_loss = ? WHERE run_id = ?", (p.final_val_loss, e.run_id)),
    ]


def _run_ended(status: str, error_field: str | None) -> Callable[[Event], list[_Statement]]:
    """failed, cancelled and interrupted: the status, when, why, and the checkpoint left."""

    def project(e: Event) -> list[_Statement]:
        p = e.typed()
        error = getattr(p, error_field) if error_field else None
        sql = (
            "UPDATE runs SET status = ?, finished = ?, error = ?,"
            " checkpoint_path = COALESCE(?, checkpoint_path) WHERE run_id = ?"
        )
        return [(sql, (status, e.ts, error, p.checkpoint_path, e.run_id))]

    return project


_PROJECTIONS: dict[str, Callable[[Event], list[_Statement]]] = {
    RunQueued.kind: _run_queued,
    RunStarted.kind: _run_started,
    EpochMetrics.kind: _epoch_metrics,
    CodebookWarning.kind: _codebook_warning,
    DatasetScanned.kind: _dataset_scanned,
    CheckpointSaved.kind: _checkpoint_saved,
    ModelSaved.kind: _model_saved,
    PriorEpochMetrics.kind: _prior_epoch_metrics,
    MemorizationWarning.kind: _memorization_warning,
    CopiesMeasured.kind: _copies_measured,
    PriorSaved.kind: _prior_saved,
    RunCompleted.kind: _run_completed,
    RunFailed.kind: _run_ended("failed", "error"),
    RunCancelled.kind: _run_ended("cancelled", None),
    RunInterrupted.kind: _run_ended("interrupted", "reason"),
}


# -- connections and migrations -------------------------------------------------------------


async def _connect(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: no implicit transactions; every write says BEGIN and COMMIT.
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    try:
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except BaseException:
        await db.close()
        raise
    return db


async def _enable_wal(db: aiosqlite.Connection, path: Path) -> None:
    """Switch the file to WAL, so readers never wait for the writer (nor it for them).

    Switching needs a moment alone with the file and SQLite's busy timeout does not
    cover it: a second core opening the same new file at once gets "database is
    locked" at once. So retry for as long as the busy timeout would wait.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            rows = await db.execute_fetchall("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(2 * pause, 0.1)
    if rows[0][0] != "wal":  # e.g. a file system without shared memory
        logger.warning("%s: SQLite refused WAL mode (%s); readers may wait", path, rows[0][0])


async def _user_version(db: aiosqlite.Connection) -> int:
    rows = await db.execute_fetchall("PRAGMA user_version")
    return rows[0][0]


async def _refuse_newer(db: aiosqlite.Connection, path: Path) -> None:
    version = await _user_version(db)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path} has schema version {version}, but this distill knows versions up to "
            f"{SCHEMA_VERSION}: a newer distill wrote it. Upgrade distill, or point "
            "DISTILL_HOME at another folder."
        )


async def _migrate(db: aiosqlite.Connection) -> None:
    """Apply the migrations the file lacks, each with its version bump in one transaction.

    Two processes opening a new file at once both try; the second one's script fails on
    what the first created, rolls back, and finds the version already moved on.
    """
    while (version := await _user_version(db)) < SCHEMA_VERSION:
        script = MIGRATIONS[version]
        try:
            await db.executescript(
                f"BEGIN IMMEDIATE;\n{script};\nPRAGMA user_version = {version + 1};\nCOMMIT;"
            )
        except sqlite3.OperationalError:
            await _rollback(db)
            if await _user_version(db) == version:
                raise


async def _rollback(db: aiosqlite.Connection) -> None:
    """Roll back if a transaction is open (SQLite ends some itself on I/O errors)."""
    try:
        await db.rollback()
    except sqlite3.Error as exc:  # the original error is the one worth raising
        logger.warning("rollback failed: %s", exc)


def _to_json(value: Any) -> str:
    # NaN and infinities are kept (as Python's json writes them) so nothing is lost.
    return json.dumps(value, separators=(",", ":"))


def _run_row(row: sqlite3.Row) -> dict[str, Any]:
    run = dict(row)
    run["spec"] = json.loads(run["spec"])
    return run
