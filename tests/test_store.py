"""The store on real SQLite files: schema and migrations, the event record, projections."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from helpers import stamp

from distill.core.store import (
    EPOCH_COLUMNS,
    HEALTH_COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    SchemaTooNew,
    Store,
    StoreClosed,
    UnknownRun,
)
from distill.events import (
    CheckpointSaved,
    CodebookWarning,
    DatasetScanned,
    EpochMetrics,
    Event,
    LevelHealth,
    ModelSaved,
    Payload,
    RunCompleted,
    RunFailed,
    RunInterrupted,
    RunQueued,
    RunStarted,
    SkippedFile,
    StepMetrics,
)

TABLES = {
    "events", "runs", "epoch_metrics", "codebook_health", "codebook_warnings", "datasets", "models"
}  # fmt: skip


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "nested" / "distill.sqlite"  # folders not there yet


def step(i: int) -> StepMetrics:
    return StepMetrics(0, i, 10, loss=1.0 / (i + 1), recon_loss=0.5, commit_loss=0.1)


def health(level: int, utilization: float, dead_codes: int) -> LevelHealth:
    return LevelHealth(level, 64, utilization, 40.0 * utilization, dead_codes, 0.2 / level)


def epoch(n: int, val_loss: float, best_epoch: int, levels: list[LevelHealth]) -> EpochMetrics:
    return EpochMetrics(
        epoch=n,
        epochs=2,
        train_loss=1.0 - n / 10,
        train_recon_loss=0.8,
        train_commit_loss=0.2,
        val_loss=val_loss,
        val_recon_loss=val_loss * 0.9,
        val_commit_loss=val_loss * 0.1,
        val_levels=levels,
        best_epoch=best_epoch,
        seconds=3.5,
        # the training files: each level a tenth more used than on the held-out files
        train_levels=[dataclasses.replace(h, utilization=h.utilization + 0.1) for h in levels],
        val_mel_error=val_loss * 2,
    )


def sync_connect(path: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(path))


def test_migrations_create_the_schema_and_set_user_version(db_path: Path) -> None:
    async def main() -> None:
        store = await Store.open(db_path)
        await store.close()

    asyncio.run(main())
    with sync_connect(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert TABLES <= tables
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"runs_by_created", "runs_by_status", "runs_by_dataset"} <= indexes

        def columns(table: str) -> list[str]:
            return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]

        # One name per quantity: the tables use the event schema's field names verbatim.
        numeric = [
            f.name
            for f in dataclasses.fields(EpochMetrics)
            if f.type in ("int", "float", "float | None")
        ]
        assert columns("epoch_metrics") == ["run_id", *numeric] == ["run_id", *EPOCH_COLUMNS]
        level_fields = [f.name for f in dataclasses.fields(LevelHealth)]
        assert columns("codebook_health") == ["run_id", "epoch", "split", *level_fields]
        assert list(HEALTH_COLUMNS) == level_fields
        assert columns("codebook_warnings") == [
            "run_id",
            "seq",
            *(f.name for f in dataclasses.fields(CodebookWarning)),
        ]


def test_two_cores_creating_the_file_at_once_both_open_it(db_path: Path) -> None:
    async def main() -> None:
        stores = await asyncio.gather(Store.open(db_path), Store.open(db_path))
        for store in stores:
            await store.close()

    asyncio.run(main())
    with sync_connect(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_reopening_keeps_data_and_schema(db_path: Path) -> None:
    async def main() -> None:
        async with await Store.open(db_path) as store:
            await store.create_run("r1", "vqvae", "/data/kicks", {"seed": 1}, "kicks")
            await store.append(stamp("r1", [step(0), step(1)]))
        for _ in range(2):
            async with await Store.open(db_path) as store:
                assert [e.seq for e in await store.events("r1")] == [1, 2]
                run = await store.run("r1")
                assert run["spec"] == {"seed": 1} and run["model_name"] == "kicks"

    asyncio.run(main())
    with sync_connect(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_database_from_a_newer_distill_is_refused(db_path: Path) -> None:
    async def main() -> None:
        await (await Store.open(db_path)).close()
        with sync_connect(db_path) as db:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        with pytest.raises(SchemaTooNew, match=r"schema version \d+.*newer distill"):
            await Store.open(db_path)

    asyncio.run(main())
    with sync_connect(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_a_version_4_database_upgrades_to_one_name_per_quantity(db_path: Path) -> None:
    """Migration 5 renames in place: the best epoch's loss and perplexity, the codebook's
    warnings, a scan's counts and a dataset's column keep their rows under the new names,
    and stored run_completed events read as today's RunCompleted (a NaN loss too)."""
    db_path.parent.mkdir(parents=True)
    with sync_connect(db_path) as db:
        db.executescript(f"{';'.join(MIGRATIONS[:4])}; PRAGMA user_version = 4;")
        db.execute(
            "INSERT INTO runs (run_id, run_type, dataset, created, best_epoch, final_val_loss,"
            " final_val_perplexity) VALUES ('old', 'prior', '/d', 1, 1, 0.5, 2.5)"
        )
        db.execute("INSERT INTO warnings VALUES ('old', 3, 0, 2, 0.25, 0.3, 'level 2 is weak')")
        db.execute("INSERT INTO datasets VALUES ('/d', 7, 2, 4.5, 10.0)")
        completed = ('{"best_epoch":1,"final_val_loss":0.5,"model_path":"/m.distill",'
                     '"seconds":2.0}', '{"best_epoch":0,"final_val_loss":NaN,"model_path":"",'
                     '"seconds":1.0}')  # fmt: skip
        db.executemany(
            "INSERT INTO events VALUES ('old', ?, ?, 'run_completed', ?)",
            [(seq, float(seq), payload) for seq, payload in enumerate(completed, 1)],
        )
        db.commit()

    async def main() -> tuple[dict, list, list, list[Event]]:
        async with await Store.open(db_path) as store:
            run = await store.run("old")
            assert run is not None
            return (
                run,
                await store.codebook_warnings("old"),
                await store.datasets(),
                await store.events("old"),
            )

    run, warnings, datasets, events = asyncio.run(main())
    assert run["best_val_loss"] == 0.5 and run["best_val_perplexity"] == 2.5
    assert "final_val_loss" not in run and "final_val_perplexity" not in run
    assert warnings == [
        {"run_id": "old", "seq": 3, "epoch": 0, "level": 2, "utilization": 0.25,
         "threshold": 0.3, "message": "level 2 is weak", "cause": "utilization"}
    ]  # fmt: skip
    assert datasets == [
        {"dataset": "/d", "file_count": 7, "skipped_count": 2, "total_seconds": 4.5,
         "last_scanned": 10.0}
    ]  # fmt: skip
    first, second = (e.typed() for e in events)
    assert first == RunCompleted(1, 0.5, "/m.distill", 2.0)
    assert isinstance(second, RunCompleted) and math.isnan(second.best_val_loss)
    with sync_connect(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "warnings" not in tables and "codebook_warnings" in tables


def test_a_version_7_database_reads_its_epochs_held_out_health_as_val_levels(
    db_path: Path,
) -> None:
    """Migration 8: a stored epoch_metrics event says `levels` for the held-out health;
    it reads back as EpochMetrics.val_levels, its train_levels untouched. A checkpoint's
    history from before (a dict, never in the store) reads the same way."""
    health = LevelHealth(1, 8, 0.5, 3.0, 4, 0.1, 20)
    old = {**epoch(0, 1.0, 0, [health]).to_dict()}
    old["levels"] = old.pop("val_levels")
    db_path.parent.mkdir(parents=True)
    with sync_connect(db_path) as db:
        db.executescript(f"{';'.join(MIGRATIONS[:7])}; PRAGMA user_version = 7;")
        db.execute(
            "INSERT INTO runs (run_id, run_type, dataset, created) VALUES ('old', 'vqvae', '/d', 1)"
        )
        db.execute(
            "INSERT INTO events VALUES ('old', 1, 1.0, 'epoch_metrics', ?)",
            (json.dumps(old, separators=(",", ":")),),
        )
        db.commit()

    async def main() -> list[Event]:
        async with await Store.open(db_path) as store:
            return await store.events("old")

    (event,) = asyncio.run(main())
    assert "levels" not in event.payload
    assert event.typed() == epoch(0, 1.0, 0, [health])
    assert EpochMetrics.upgraded(old) == epoch(0, 1.0, 0, [health]).to_dict()


def test_events_round_trip_from_any_seq(db_path: Path) -> None:
    payloads: list[Payload] = [
        RunQueued("vqvae", "/data/kicks", {"nested": {"list": [1, 2.5, None]}, "name": "kické"}),
        step(0),
        step(1),
        step(2),
        RunFailed("boom"),
    ]
    events = stamp("r1", payloads)

    async def main() -> None:
        async with await Store.open(db_path) as store:
            await store.create_run("r1", "vqvae", "/data/kicks", {})
            assert await store.last_seq("r1") == 0
            await store.append(events)
            assert await store.events("r1") == events
            assert await store.events("r1", after_seq=2) == events[2:]
            assert await store.events("r1", after_seq=1, limit=2) == events[1:3]
            assert await store.events("r1", after_seq=5) == []
            assert await store.last_seq("r1") == 5
            assert (await store.run("r1"))["last_seq"] == 5
            assert (await store.events("r1"))[0].typed() == payloads[0]
            assert await store.events("nobody") == [] and await store.last_seq("nobody") == 0

    asyncio.run(main())


def test_a_duplicate_seq_raises_and_keeps_nothing_of_its_batch(db_path: Path) -> None:
    async def main() -> None:
        async with await Store.open(db_path) as store:
            await store.create_run("r1", "vqvae", "/data", {})
            await store.append(stamp("r1", [step(0), step(1), step(2)]))
            batch = stamp("r1", [CheckpointSaved(1, "/ckpt"), step(4)], first_seq=4)
            duplicate = Event("r1", 2, "step_metrics", {"overwritten": True}, 5.0)
            with pytest.raises(sqlite3.IntegrityError):
                await store.append([*batch, duplicate])
            assert [e.seq for e in await store.events("r1")] == [1, 2, 3]
            assert (await store.events("r1", after_seq=1, limit=1))[0].payload == step(1).to_dict()
            run = await store.run("r1")
            assert run["last_seq"] == 3 and run["checkpoint_path"] is None
            await store.append(batch)  # the store is still usable, the seqs still free
            assert await store.last_seq("r1") == 5

    asyncio.run(main())


def test_an_event_of_a_run_never_created_is_refused(db_path: Path) -> None:
    async def main() -> None:
        async with await Store.open(db_path) as store:
            with pytest.raises(sqlite3.IntegrityError):
                await store.append(stamp("ghost", [step(0)]))
            assert await store.events("ghost") == []

    asyncio.run(main())


def test_projections_follow_a_realistic_run(db_path: Path) -> None:
    dataset = "/data/kicks"
    epoch0 = [health(1, 0.9, 6), health(2, 0.25, 48)]
    epoch1 = [health(1, 0.8, 12), health(2, 0.5, 32)]
    payloads: list[Payload] = [
        RunQueued("vqvae", dataset, {"settings": {}}),
        RunStarted("vqvae", dataset, 2, 0, 10, {"settings": {}}),
        DatasetScanned(
            dataset,
            files_used=["a.wav", "b.wav", "c.flac"],
            files_skipped=[SkippedFile("notes.txt", "not audio"), SkippedFile("s.wav", "silent")],
            total_seconds=4.5,
            train_files=2,
            val_files=1,
            latent_vectors=512,
            codebook_size=64,
            rvq_levels=2,
            suggested_codebook_size=64,
        ),
        step(0),
        epoch(0, 0.7, 0, epoch0),
        CodebookWarning(0, 2, 0.25, 0.3, "level 2 uses 25% of its codes"),
        CheckpointSaved(1, "/runs/r1/checkpoint.distill"),
        epoch(1, 0.5, 1, epoch1),
        CheckpointSaved(2, "/runs/r1/checkpoint.distill"),
        ModelSaved("kicks", "/models/kicks.distill"),
        RunCompleted(1, 0.5, "/models/kicks.distill", 12.0),
    ]
    events = stamp("r1", payloads)

    async def main() -> None:
        async with await Store.open(db_path) as store:
            await store.create_run("r1", "vqvae", dataset, {"dataset": dataset}, "kicks")
            assert (await store.run("r1"))["status"] == "queued"
            await store.append(events[:2])
            run = await store.run("r1")
            assert run["status"] == "running" and run["started"] == events[1].ts
            assert run["epochs"] == 2
            await store.append(events[2:])

            run = await store.run("r1")
            assert run["status"] == "completed" and run["finished"] == events[-1].ts
            assert run["epoch"] == 1 and run["best_epoch"] == 1
            assert run["best_val_loss"] == 0.5 and run["val_mel_error"] == 1.0
            # the weakest level of the best epoch, on the training files
            assert run["worst_utilization"] == pytest.approx(0.6)
            assert run["checkpoint_path"] == "/runs/r1/checkpoint.distill"
            assert run["model_name"] == "kicks" and run["model_path"] == "/models/kicks.distill"
            assert run["error"] is None and run["last_seq"] == len(events)

            metrics = await store.epoch_metrics("r1")
            assert [m["epoch"] for m in metrics] == [0, 1]
            for row, payload in zip(metrics, (payloads[4], payloads[7]), strict=True):
                assert row == {"run_id": "r1", **{c: getattr(payload, c) for c in EPOCH_COLUMNS}}

            rows = await store.codebook_health("r1")
            expected = [
                {"run_id": "r1", "epoch": n, "split": "val", **dataclasses.asdict(level)}
                for n, levels in ((0, epoch0), (1, epoch1))
                for level in levels
            ]
            assert rows == expected

            assert await store.codebook_warnings("r1") == [
                {
                    "run_id": "r1",
                    "seq": 6,
                    "epoch": 0,
                    "level": 2,
                    "utilization": 0.25,
                    "threshold": 0.3,
                    "message": "level 2 uses 25% of its codes",
                    "cause": "utilization",
                }
            ]
            assert await store.datasets() == [
                {
                    "dataset": dataset,
                    "file_count": 3,
                    "skipped_count": 2,
                    "total_seconds": 4.5,
                    "last_scanned": events[2].ts,
                }
            ]
            assert await store.models() == [
                {
                    "name": "kicks",
                    "path": "/models/kicks.distill",
                    "run_id": "r1",
                    "created": events[9].ts,
                }
            ]

    asyncio.run(main())


def test_a_repeated_epoch_replaces_its_projection(db_path: Path) -> None:
    """A resumed run may redo an epoch its last attempt never checkpointed."""

    async def main() -> None:
        async with await Store.open(db_path) as store:
            await store.create_run("r1", "vqvae", "/data", {})
            first = epoch(0, 0.9, 0, [health(1, 0.2, 50), health(2, 0.1, 60)])
            again = epoch(0, 0.6, 0, [health(1, 0.7, 20), health(2, 0.6, 30)])
            await store.append(stamp("r1", [first, again]))
            assert [m["val_loss"] for m in await store.epoch_metrics("r1")] == [0.6]
            rows = await store.codebook_health("r1")
            assert [r["utilization"] for r in rows] == [0.7, 0.6]
            run = await store.run("r1")
            assert run["best_val_loss"] == 0.6 and run["worst_utilization"] == pytest.approx(0.7)

    asyncio.run(main())


def test_a_nan_loss_is_kept_in_the_record(db_path: Path) -> None:
    async def main() -> None:
        async with await Store.open(db_path) as store:
            await store.create_run("r1", "vqvae", "/data", {})
            await store.append(stamp("r1", [epoch(0, math.nan, 0, [health(1, 0.5, 3)])]))
            (event,) = await store.events("r1")
            assert math.isnan(event.payload["val_loss"])
            assert (await store.epoch_metrics("r1"))[0]["val_loss"] is None  # SQLite's NaN

    asyncio.run(main())


def test_run_failed_and_interrupted_set_error_and_keep_the_checkpoint(db_path: Path) -> None:
    async def main() -> None:
        async with await Store.open(db_path) as store:
            for run_id in ("f", "i"):
                await store.create_run(run_id, "vqvae", "/data", {})
            started = RunStarted("vqvae", "/data", 5, 0, 10, {})
            await store.append(
                stamp("f", [started, CheckpointSaved(1, "/ckpt"), RunFailed("CUDA out of memory")])
            )
            await store.append(stamp("i", [started, RunInterrupted("core stopped", "/ckpt-i")]))
            failed, interrupted = await store.run("f"), await store.run("i")
            assert failed["status"] == "failed" and failed["error"] == "CUDA out of memory"
            assert failed["checkpoint_path"] == "/ckpt" and failed["finished"] == 1003.0
            assert interrupted["status"] == "interrupted"
            assert interrupted["error"] == "core stopped"
            assert interrupted["checkpoint_path"] == "/ckpt-i"
            # Resuming queues it again: the old ending no longer applies.
            await store.append(stamp("f", [RunQueued("vqvae", "/data", {})], first_seq=4))
            resumed = await store.run("f")
            assert resumed["status"] == "queued"
            assert resumed["error"] is None and resumed["finished"] is None

    asyncio.run(main())


def test_runs_list_newest_first_filtered_by_status_and_dataset(db_path: Path) -> None:
    async def main() -> None:
        async with await Store.open(db_path) as store:
            for run_id, dataset in (("r1", "/kicks"), ("r2", "/snares"), ("r3", "/kicks")):
                await store.create_run(run_id, "vqvae", dataset, {})
            await store.append(stamp("r1", [RunStarted("vqvae", "/kicks", 2, 0, 1, {})]))
            await store.append(stamp("r2", [RunFailed("bad")]))

            def ids(runs: list[dict]) -> list[str]:
                return [r["run_id"] for r in runs]

            assert ids(await store.runs()) == ["r3", "r2", "r1"]
            assert ids(await store.runs(dataset="/kicks")) == ["r3", "r1"]
            assert ids(await store.runs(status="queued")) == ["r3"]
            assert ids(await store.runs(status="running", dataset="/kicks")) == ["r1"]
            assert ids(await store.runs(status="running", dataset="/snares")) == []
            assert ids(await store.runs(limit=1, offset=1)) == ["r2"]
            assert ids(await store.unfinished_runs()) == ["r1", "r3"]
            assert (await store.runs())[0]["spec"] == {}

    asyncio.run(main())


def test_set_status_marks_a_run_and_refuses_unknown_ones(db_path: Path) -> None:
    async def main() -> None:
        async with await Store.open(db_path) as store:
            await store.create_run("r1", "vqvae", "/data", {})
            await store.set_status("r1", "interrupted", error="core died")
            run = await store.run("r1")
            assert run["status"] == "interrupted" and run["error"] == "core died"
            assert run["finished"] is not None
            assert await store.unfinished_runs() == []
            with pytest.raises(UnknownRun):
                await store.set_status("nobody", "failed")
            with pytest.raises(ValueError, match="unknown status"):
                await store.set_status("r1", "exploded")
            assert await store.run("nobody") is None

    asyncio.run(main())


def test_a_closed_store_says_so_and_closes_twice(db_path: Path) -> None:
    async def main() -> None:
        store = await Store.open(db_path)
        await store.close()
        await store.close()
        with pytest.raises(StoreClosed):
            await store.runs()
        with pytest.raises(StoreClosed):
            await store.append(stamp("r1", [step(0)]))

    asyncio.run(main())


def test_known_runs_are_the_ids_the_store_holds(tmp_path: Path) -> None:
    async def main() -> None:
        async with await Store.open(tmp_path / "db.sqlite") as store:
            await store.create_run("r1", "vqvae", "/sounds", {"dataset": "/sounds"}, "kicks")
            await store.create_run("r2", "vqvae", "/sounds", {"dataset": "/sounds"}, "snares")
            assert await store.known_runs(["r1", "elsewhere", "r2", "r1"]) == {"r1", "r2"}
            assert await store.known_runs([]) == set()

    asyncio.run(main())
