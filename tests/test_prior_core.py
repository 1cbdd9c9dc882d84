"""A prior run through the core: a real worker process, a real SQLite file, followers."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from core_runs import assert_no_gaps, collect, request, stored_events
from helpers import TINY_PRIOR, TINY_PRIOR_SETTINGS, write_good_sounds
from waiting import within_deadline

from distill.core.core import Core, RunError
from distill.events import STOP_KEPT
from distill.models.library import read_metadata
from distill.models.model_file import ModelFileError
from distill.paths import database_path
from distill.training.jobs import RUN_TYPES
from distill.training.specs import PriorRequest


def prior_request(model: str, epochs: int = 2, dataset: str | None = None) -> PriorRequest:
    return PriorRequest(
        model=model,
        dataset=dataset,
        settings={"epochs": epochs, **TINY_PRIOR_SETTINGS},
        overrides=TINY_PRIOR,
    )


def test_a_prior_run_goes_through_worker_store_and_followers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_good_sounds(tmp_path / "sounds")

    async def scenario():
        async with Core(home, run_types=RUN_TYPES) as core:
            vqvae_run = await core.submit("vqvae", request(tmp_path / "sounds", 1, "kicks"))
            await collect(core, vqvae_run)
            run_id = await core.submit("prior", prior_request("kicks"))  # dataset from the card
            live, again = await asyncio.gather(collect(core, run_id), collect(core, run_id))
            return (
                run_id,
                live,
                again,
                await core.store.run(run_id),
                await core.store.prior_epoch_metrics(run_id),
                await core.store.runs(),
                await core.store.models(),
            )

    run_id, live, again, row, epochs, runs, models = within_deadline(scenario())
    rows = stored_events(home, run_id)
    assert_no_gaps(rows)
    assert [(e.seq, e.kind) for e in live] == rows == [(e.seq, e.kind) for e in again]
    kinds = [kind for _, kind in rows]
    assert kinds[:3] == ["run_queued", "codes_extracted", "run_started"]
    assert kinds[-2:] == ["prior_saved", "run_completed"]
    assert live[0].payload["run_type"] == "prior"

    assert row["run_type"] == "prior" and row["status"] == "completed"
    assert row["dataset"] == str((tmp_path / "sounds").resolve())
    assert row["model_name"] == "kicks"
    assert row["model_path"] == str(home / "models" / "kicks.distill")
    epoch_events = [e.payload for e in live if e.kind == "prior_epoch_metrics"]
    assert epochs == [{"run_id": run_id, **payload} for payload in epoch_events]
    best = epoch_events[row["best_epoch"]]
    assert row["best_val_perplexity"] == best["val_perplexity"]
    assert row["best_val_loss"] == best["val_loss"]
    assert [r["run_type"] for r in runs] == ["prior", "vqvae"]
    assert [m["run_id"] for m in models] == [runs[1]["run_id"]], "the model keeps its own run"

    card = read_metadata(home / "models" / "kicks.distill")
    assert card["prior"]["run_id"] == run_id
    assert card["prior"]["training"]["best_epoch"] == row["best_epoch"]


def test_a_cancelled_prior_run_resumes_as_a_prior_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_good_sounds(tmp_path / "sounds")

    async def scenario():
        async with Core(home, run_types=RUN_TYPES) as core:
            await collect(core, await core.submit("vqvae", request(tmp_path / "sounds", 1, "m")))
            run_id = await core.submit("prior", prior_request("m", epochs=200))
            asked = False  # the cancel's own checkpoint_saved must not ask again
            async for event in core.follow(run_id):
                if event.kind == "checkpoint_saved" and not asked:
                    await core.cancel(run_id)
                    asked = True
            cancelled = await core.store.run(run_id)
            after = await core.store.last_seq(run_id)
        async with Core(
            home, run_types=RUN_TYPES
        ) as core:  # as `distill runs resume` does, in a new process
            await core.resume(run_id)
            asked = False
            # stop the resumed run too, once it has gone on from its checkpoint
            resumed = []
            async for event in core.follow(run_id, after_seq=after):
                resumed.append(event)
                if event.kind == "prior_epoch_metrics" and not asked:
                    await core.cancel(run_id)
                    asked = True
        return run_id, cancelled, resumed

    run_id, cancelled, resumed = within_deadline(scenario())
    assert cancelled["status"] == "cancelled" and cancelled["run_type"] == "prior"
    assert resumed[0].kind == "run_queued" and resumed[0].payload["run_type"] == "prior"
    started = next(e for e in resumed if e.kind == "run_started")
    assert started.payload["run_type"] == "prior" and started.payload["start_epoch"] >= 1
    assert resumed[-1].kind == "run_cancelled"
    assert_no_gaps(stored_events(home, run_id))


def test_a_prior_stopped_keeping_the_best_saves_its_best_epoch(tmp_path: Path) -> None:
    """Cancel with keep_best after two epochs: the run ends completed, the model file holds
    a prior of the best epoch so far, with the card a finished run would write."""
    home = tmp_path / "home"
    write_good_sounds(tmp_path / "sounds")

    async def scenario():
        async with Core(home, run_types=RUN_TYPES) as core:
            await collect(core, await core.submit("vqvae", request(tmp_path / "sounds", 1, "k")))
            run_id = await core.submit("prior", prior_request("k", epochs=200))
            events, asked = [], False
            async for event in core.follow(run_id):
                events.append(event)
                epochs = sum(e.kind == "prior_epoch_metrics" for e in events)
                if epochs == 2 and not asked:
                    await core.cancel(run_id, keep_best=True)
                    asked = True
            return run_id, events, await core.store.run(run_id)

    run_id, events, row = within_deadline(scenario())
    kinds = [e.kind for e in events]
    assert kinds[-2:] == ["prior_saved", "run_completed"], kinds[-4:]
    done = events[-1].payload
    assert done["stopped_early"] == STOP_KEPT and 2 <= done["epochs_run"] < 200
    assert row["status"] == "completed"
    metrics = [e.payload for e in events if e.kind == "prior_epoch_metrics"]
    best = min(metrics, key=lambda m: m["val_perplexity"])
    card = read_metadata(home / "models" / "k.distill")["prior"]
    assert card["run_id"] == run_id
    assert card["training"]["best_epoch"] == best["epoch"] == done["best_epoch"]
    assert card["training"]["best_val_perplexity"] == best["val_perplexity"]
    assert len(card["curves"]["val_perplexity"]) == done["epochs_run"]


def test_bad_prior_requests_are_refused_before_anything_is_queued(tmp_path: Path) -> None:
    home = tmp_path / "home"

    async def scenario():
        async with Core(home, run_types=RUN_TYPES) as core:
            with pytest.raises(ModelFileError, match="no model named 'nope'"):
                await core.submit("prior", prior_request("nope"))
            foreign = tmp_path / "foreign.distill"
            foreign.write_bytes(b"not a model at all")
            with pytest.raises(ModelFileError, match="not a distill model file"):
                await core.submit("prior", prior_request(str(foreign)))
            with pytest.raises(RunError, match="no dataset folder"):
                await core.submit(
                    "prior",
                    prior_request(str(_a_model(home, tmp_path)), dataset=str(tmp_path / "gone")),
                )

    within_deadline(scenario())
    with sqlite3.connect(database_path(home)) as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def _a_model(home: Path, tmp_path: Path) -> Path:
    """A real model file, trained in this process (no core involved)."""
    from helpers import tiny_spec

    from distill.training.vqvae import train_vqvae

    write_good_sounds(tmp_path / "sounds")
    spec = tiny_spec(tmp_path / "sounds", tmp_path, epochs=1, name="direct")
    train_vqvae(spec, lambda event: None)
    return spec.model_path
