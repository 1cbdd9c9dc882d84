"""The schema: the migrations that build it, and how a file is brought up to date.

Append-only: MIGRATIONS[i] takes the schema from version i to i + 1. Never edit one that
has shipped; add the next. A JSON column is declared TEXT: a declared type of "JSON"
would give it NUMERIC affinity in SQLite.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

from distill.core.store.connection import fetch, rollback
from distill.core.store.errors import SchemaTooNew

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
    # 5: one name per quantity. A run's loss and perplexity are its best epoch's, not its
    # last one's; the codebook's warnings are named beside the memorization ones; a scan's
    # counts are not its lists of files; a dataset is `dataset` in every table, as in the
    # events. Stored run_completed events say best_val_loss too, as RunCompleted does
    # (the store writes JSON without spaces, so the key is matched as written).
    """
    ALTER TABLE runs RENAME COLUMN final_val_loss TO best_val_loss;
    ALTER TABLE runs RENAME COLUMN final_val_perplexity TO best_val_perplexity;
    ALTER TABLE warnings RENAME TO codebook_warnings;
    ALTER TABLE datasets RENAME COLUMN path TO dataset;
    ALTER TABLE datasets RENAME COLUMN files_used TO file_count;
    ALTER TABLE datasets RENAME COLUMN files_skipped TO skipped_count;
    UPDATE events SET payload = replace(payload, '"final_val_loss":', '"best_val_loss":')
        WHERE kind = 'run_completed';
    """,
    # 6: where a run's latest attempt ran: a Dask worker's address (run_placed events);
    # NULL for this machine's own process pool.
    """
    ALTER TABLE runs ADD COLUMN worker TEXT;
    """,
    # 7: a codebook warning says why: a level under-uses its codes ('utilization') or
    # earns almost nothing for them ('low_gain'; events.CodebookWarning).
    """
    ALTER TABLE codebook_warnings ADD COLUMN cause TEXT NOT NULL DEFAULT 'utilization';
    """,
    # 8: an epoch's held-out health is `val_levels`, beside `train_levels` (EpochMetrics);
    # stored epoch_metrics events say so too ('"train_levels":' does not match: no quote
    # before its "levels"). events.Payload.renamed still reads an old checkpoint's history.
    """
    UPDATE events SET payload = replace(payload, '"levels":', '"val_levels":')
        WHERE kind = 'epoch_metrics';
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


async def user_version(db: aiosqlite.Connection) -> int:
    rows = await fetch(db, "PRAGMA user_version")
    return rows[0][0]


async def refuse_newer(db: aiosqlite.Connection, path: Path) -> None:
    version = await user_version(db)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path} has schema version {version}, but this distill knows versions up to "
            f"{SCHEMA_VERSION}: a newer distill wrote it. Upgrade distill, or point "
            "DISTILL_HOME at another folder."
        )


async def migrate(db: aiosqlite.Connection) -> None:
    """Apply the migrations the file lacks, each with its version bump in one transaction.

    Two processes opening a new file at once both try; the second one's script fails on
    what the first created, rolls back, and finds the version already moved on.
    """
    while (version := await user_version(db)) < SCHEMA_VERSION:
        script = MIGRATIONS[version]
        try:
            await db.executescript(
                f"BEGIN IMMEDIATE;\n{script};\nPRAGMA user_version = {version + 1};\nCOMMIT;"
            )
        except sqlite3.OperationalError:
            await rollback(db)
            if await user_version(db) == version:
                raise
