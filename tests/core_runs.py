"""Tiny runs on a real core, and what SQLite then holds of them: for the core's tests
(test_core, test_prior_core, test_core_load, test_disk_full)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from helpers import TINY_MEL, TINY_MODEL, TINY_SETTINGS

from distill.core.core import Core
from distill.events import Event
from distill.paths import database_path
from distill.training.specs import TrainRequest


def request(dataset: Path, epochs: int = 2, name: str | None = None, **settings) -> TrainRequest:
    """A tiny VQ-VAE run, seconds long (a 4-step decoder stage, previews each epoch)."""
    return TrainRequest(
        dataset=str(dataset),
        model_name=name,
        settings={**TINY_SETTINGS, "epochs": epochs, **settings},
        overrides=TINY_MODEL,
        mel=TINY_MEL.to_dict(),
    )


async def collect(core: Core, run_id: str, after: int = 0) -> list[Event]:
    """Every event of the run after seq `after`, to its end."""
    return [event async for event in core.follow(run_id, after_seq=after)]


def stored_events(home: Path, run_id: str) -> list[tuple[int, str]]:
    """(seq, kind) of every event SQLite holds for the run, in seq order."""
    with contextlib.closing(sqlite3.connect(database_path(home))) as db:
        return db.execute(
            "SELECT seq, kind FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
        ).fetchall()


def assert_no_gaps(rows: list[tuple[int, str]]) -> None:
    assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))
