"""Connections to the SQLite file: how one is opened, and how statements run on it.

aiosqlite runs one thread per connection, so a round trip costs the same for one row or
many: a statement whose parameters are a list of rows runs as one `executemany` (one
awaited `execute` per row manages about 13k rows/s, `executemany` about 290k).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000  # how long a write waits for another process's write lock

# SQL and its parameters: a tuple (or named values) for one row, a list of them for many.
Statement = tuple[str, Sequence[Any] | Mapping[str, Any]]


async def connect(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: no implicit transactions; every write says BEGIN and COMMIT.
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    try:
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except BaseException:
        await db.close()
        raise
    return db


async def enable_wal(db: aiosqlite.Connection, path: Path) -> None:
    """Switch the file to WAL, so readers never wait for the writer (nor it for them).

    Switching needs a moment alone with the file and SQLite's busy timeout does not
    cover it: a second core opening the same new file at once gets "database is
    locked" at once. So retry for as long as the busy timeout would wait.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            rows = await fetch(db, "PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(2 * pause, 0.1)
    if rows[0][0] != "wal":  # e.g. a file system without shared memory
        logger.warning("%s: SQLite refused WAL mode (%s); readers may wait", path, rows[0][0])


async def fetch(
    db: aiosqlite.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> list[sqlite3.Row]:
    """Every row of one query, as a list (aiosqlite hands back a bare iterable)."""
    return list(await db.execute_fetchall(sql, params))


async def execute(db: aiosqlite.Connection, statements: Sequence[Statement]) -> int:
    """Run statements on `db` (a list of parameter tuples: one executemany); rows changed."""
    changed = 0
    for sql, params in statements:
        if isinstance(params, list):
            cursor = await db.executemany(sql, params)
        else:
            cursor = await db.execute(sql, params)
        changed += max(cursor.rowcount, 0)
    return changed


async def rollback(db: aiosqlite.Connection) -> None:
    """Roll back if a transaction is open (SQLite ends some itself on I/O errors)."""
    try:
        await db.rollback()
    except sqlite3.Error as exc:  # the original error is the one worth raising
        logger.warning("rollback failed: %s", exc)


def to_json(value: Any) -> str:
    # NaN and infinities are kept (as Python's json writes them) so nothing is lost.
    return json.dumps(value, separators=(",", ":"))
