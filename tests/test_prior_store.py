"""The store's prior tables: migration 2, named by the event schema, fed by projections."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from contextlib import closing
from pathlib import Path

from helpers import stamp

from distill.core.store import MIGRATIONS, SCHEMA_VERSION, Store
from distill.events import (
    CheckpointSaved,
    CopiesMeasured,
    MemorizationWarning,
    PriorEpochMetrics,
    PriorSaved,
    PriorStepMetrics,
    RunCompleted,
    RunQueued,
    RunStarted,
)


def columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def test_prior_tables_use_the_event_schemas_field_names(tmp_path: Path) -> None:
    asyncio.run(_open_and_close(tmp_path / "d.sqlite"))
    with closing(sqlite3.connect(tmp_path / "d.sqlite")) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
        prior_fields = [f.name for f in dataclasses.fields(PriorEpochMetrics)]
        assert columns(db, "prior_epoch_metrics") == ["run_id", *prior_fields]
        warning_fields = [f.name for f in dataclasses.fields(MemorizationWarning)]
        assert columns(db, "memorization_warnings") == ["run_id", "seq", *warning_fields]
        assert "best_val_perplexity" in columns(db, "runs")


def test_a_version_1_database_migrates_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with closing(sqlite3.connect(path)) as db:
        db.executescript(f"{MIGRATIONS[0]}; PRAGMA user_version = 1;")
        db.execute(
            "INSERT INTO runs (run_id, run_type, dataset, created) VALUES ('old', 'vqvae', '/d', 1)"
        )
        db.commit()

    async def main() -> dict:
        async with await Store.open(path) as store:
            return await store.run("old")

    row = asyncio.run(main())
    assert row["run_type"] == "vqvae" and row["best_val_perplexity"] is None
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_prior_events_fill_the_prior_tables_and_the_run(tmp_path: Path) -> None:
    def epoch(n: int, perplexity: float, best: int) -> PriorEpochMetrics:
        return PriorEpochMetrics(n, 2, 3.0 - n, 2.5 - n / 10, perplexity, best, 1.5, 20.0 - n)

    payloads = [
        RunQueued("prior", "/d", {}),
        RunStarted("prior", "/d", 2, 0, 4, {}),
        PriorStepMetrics(0, 0, 4, 3.2),
        epoch(0, 1.9, 0),
        MemorizationWarning(0, 1.9, 2.0, "too sure"),
        CheckpointSaved(1, "/runs/p/checkpoint.distill"),
        epoch(1, 2.4, 0),
        PriorSaved("kicks", "/models/kicks.distill"),
        CopiesMeasured(0, 16, 12, 0.75, 0.8, 0.5),
        RunCompleted(0, 2.5, "/models/kicks.distill", 9.0),
    ]
    events = stamp("p", payloads)

    async def main():
        async with await Store.open(tmp_path / "d.sqlite") as store:
            await store.create_run("p", "prior", "/d", {}, "kicks")
            await store.append(events)
            return (
                await store.run("p"),
                await store.prior_epoch_metrics("p"),
                await store.memorization_warnings("p"),
                await store.models(),
                await store.codebook_warnings("p"),
            )

    run, epochs, warnings, models, codebook_warnings = asyncio.run(main())
    assert run["status"] == "completed" and run["run_type"] == "prior"
    assert (run["epoch"], run["epochs"], run["best_epoch"]) == (1, 2, 0)
    assert run["best_val_perplexity"] == 1.9 and run["best_val_loss"] == 2.5
    assert run["model_path"] == "/models/kicks.distill"
    assert epochs == [
        {"run_id": "p", **dataclasses.asdict(payloads[3])},
        {"run_id": "p", **dataclasses.asdict(payloads[6])},
    ]
    assert warnings == [{"run_id": "p", "seq": 5, **dataclasses.asdict(payloads[4])}]
    assert models == [] and codebook_warnings == []  # a prior makes no model row of its own


async def _open_and_close(path: Path) -> None:
    await (await Store.open(path)).close()


def test_prior_steps_are_coalesced_like_vqvae_steps_never_across_kinds() -> None:
    from distill.core.bus import EventBus
    from distill.events import StepMetrics

    bus = EventBus()
    sub = bus.subscribe(queue_size=4)
    p1, p2, p3 = stamp("p", [PriorStepMetrics(0, i, 9, 1.0) for i in range(3)])
    vq_step, p4 = stamp(
        "p", [StepMetrics(0, 0, 9, 1.0, 1.0, 0.0), PriorStepMetrics(0, 3, 9, 1.0)], 4
    )
    bus.publish_many([p1, p2])
    bus.publish(p3)  # half full, the tail is a prior step of the run: latest wins
    assert sub.coalesced == 1
    bus.publish_many([vq_step, p4])  # a tail of another kind is never replaced
    assert [sub.get_nowait().seq for _ in range(4)] == [1, 3, 4, 5]
    assert sub.coalesced == 1 and not sub.closed
