"""The projections: what each kind of event changes in the tables besides the record.

One function per event kind, registered by `@projects(Kind)`: a new kind that the pages
should find in a table gets its function here (and its table, if new, in migrations.py).
Kinds without one (steps, previews, ...) live in the record only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from distill.core.store.connection import Statement, to_json
from distill.events import (
    TRAIN_SPLIT,
    VAL_SPLIT,
    CheckpointSaved,
    ClipGenerated,
    CodebookWarning,
    CopiesMeasured,
    DatasetScanned,
    EpochMetrics,
    Event,
    GenerationMeasured,
    LevelHealth,
    MemorizationWarning,
    ModelSaved,
    Payload,
    PriorEpochMetrics,
    PriorSaved,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunInterrupted,
    RunPlaced,
    RunQueued,
    RunStarted,
)

# Column names are the event schema's field names, so a quantity has one name everywhere.
EPOCH_COLUMNS = tuple(
    f.name for f in dataclasses.fields(EpochMetrics) if f.name not in ("val_levels", "train_levels")
)
HEALTH_COLUMNS = tuple(f.name for f in dataclasses.fields(LevelHealth))
PRIOR_EPOCH_COLUMNS = tuple(f.name for f in dataclasses.fields(PriorEpochMetrics))
MEMORIZATION_COLUMNS = tuple(f.name for f in dataclasses.fields(MemorizationWarning))

P = TypeVar("P", bound=Payload)
Projection = Callable[[Event, P], list[Statement]]

# kind -> its projection, called with the event and its typed payload.
PROJECTIONS: dict[str, Projection[Any]] = {}


def projects(payload_type: type[P]) -> Callable[[Projection[P]], Projection[P]]:
    """Register the decorated function as what events of `payload_type` change."""

    def register(project: Projection[P]) -> Projection[P]:
        PROJECTIONS[payload_type.kind] = project
        return project

    return register


def appending(events: Sequence[Event]) -> list[Statement]:
    """The statements that store `events` and update the projections from them."""
    rows = [(e.run_id, e.seq, e.ts, e.kind, to_json(e.payload)) for e in events]
    statements: list[Statement] = [
        ("INSERT INTO events (run_id, seq, ts, kind, payload) VALUES (?, ?, ?, ?, ?)", rows)
    ]
    last_seq: dict[str, int] = {}
    for event in events:
        project = PROJECTIONS.get(event.kind)
        if project is not None:
            statements.extend(project(event, event.typed()))
        last_seq[event.run_id] = max(last_seq.get(event.run_id, 0), event.seq)
    statements.append(
        (
            "UPDATE runs SET last_seq = MAX(last_seq, ?) WHERE run_id = ?",
            [(seq, run_id) for run_id, seq in last_seq.items()],
        )
    )
    return statements


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
        best_val_loss = (SELECT val_loss FROM epoch_metrics
                         WHERE run_id = :run_id AND epoch = :best_epoch),
        val_mel_error = (SELECT val_mel_error FROM epoch_metrics
                         WHERE run_id = :run_id AND epoch = :best_epoch),
        worst_utilization = (SELECT MIN(utilization) FROM codebook_health
                             WHERE run_id = :run_id AND epoch = :best_epoch
                             AND split = :split)
    WHERE run_id = :run_id
"""


@projects(RunQueued)
def _run_queued(e: Event, p: RunQueued) -> list[Statement]:
    # Also a resume: the run is waiting again, its last ending no longer applies.
    sql = (
        "UPDATE runs SET status = 'queued', finished = NULL, error = NULL, worker = NULL"
        " WHERE run_id = ?"
    )
    return [(sql, (e.run_id,))]


@projects(RunPlaced)
def _run_placed(e: Event, p: RunPlaced) -> list[Statement]:
    return [("UPDATE runs SET worker = ? WHERE run_id = ?", (p.worker, e.run_id))]


@projects(RunStarted)
def _run_started(e: Event, p: RunStarted) -> list[Statement]:
    sql = (
        "UPDATE runs SET status = 'running', started = ?, finished = NULL, error = NULL,"
        " epochs = ? WHERE run_id = ?"
    )
    return [(sql, (e.ts, p.epochs, e.run_id))]


@projects(EpochMetrics)
def _epoch_metrics(e: Event, p: EpochMetrics) -> list[Statement]:
    # A resumed run may repeat an epoch its last attempt did not checkpoint: latest wins.
    values = (e.run_id, *(getattr(p, name) for name in EPOCH_COLUMNS))
    levels = [
        (e.run_id, p.epoch, split, *(getattr(level, name) for name in HEALTH_COLUMNS))
        for split, health in ((VAL_SPLIT, p.val_levels), (TRAIN_SPLIT, p.train_levels))
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


@projects(CodebookWarning)
def _codebook_warning(e: Event, p: CodebookWarning) -> list[Statement]:
    sql = (
        "INSERT INTO codebook_warnings"
        " (run_id, seq, epoch, level, utilization, threshold, message, cause)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    values = (e.run_id, e.seq, p.epoch, p.level, p.utilization, p.threshold, p.message, p.cause)
    return [(sql, values)]


@projects(DatasetScanned)
def _dataset_scanned(e: Event, p: DatasetScanned) -> list[Statement]:
    sql = (
        "INSERT INTO datasets (dataset, file_count, skipped_count, total_seconds, last_scanned)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (dataset) DO UPDATE SET"
        " file_count = excluded.file_count, skipped_count = excluded.skipped_count,"
        " total_seconds = excluded.total_seconds, last_scanned = excluded.last_scanned"
    )
    values = (p.dataset, len(p.files_used), len(p.files_skipped), p.total_seconds, e.ts)
    return [(sql, values)]


@projects(CheckpointSaved)
def _checkpoint_saved(e: Event, p: CheckpointSaved) -> list[Statement]:
    return [("UPDATE runs SET checkpoint_path = ? WHERE run_id = ?", (p.path, e.run_id))]


@projects(ModelSaved)
def _model_saved(e: Event, p: ModelSaved) -> list[Statement]:
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


_PRIOR_EPOCH_UPSERT = (
    f"INSERT OR REPLACE INTO prior_epoch_metrics (run_id, {', '.join(PRIOR_EPOCH_COLUMNS)})"
    f" VALUES (?{', ?' * len(PRIOR_EPOCH_COLUMNS)})"
)
_PRIOR_RUN_RESULT = """
    UPDATE runs SET
        epoch = :epoch, epochs = :epochs, best_epoch = :best_epoch,
        best_val_loss = (SELECT val_loss FROM prior_epoch_metrics
                         WHERE run_id = :run_id AND epoch = :best_epoch),
        best_val_perplexity = (SELECT val_perplexity FROM prior_epoch_metrics
                               WHERE run_id = :run_id AND epoch = :best_epoch)
    WHERE run_id = :run_id
"""


@projects(ClipGenerated)
def _clip_generated(e: Event, p: ClipGenerated) -> list[Statement]:
    # A generate run counts its clips where a training run counts epochs (its RunStarted
    # gave their number as its epochs), so the lists show "2/8" for both.
    return [("UPDATE runs SET epoch = ? WHERE run_id = ?", (p.index, e.run_id))]


@projects(PriorEpochMetrics)
def _prior_epoch_metrics(e: Event, p: PriorEpochMetrics) -> list[Statement]:
    # Like _epoch_metrics: a repeated epoch (after a resume) replaces its row.
    values = (e.run_id, *(getattr(p, name) for name in PRIOR_EPOCH_COLUMNS))
    result = {"run_id": e.run_id, "epoch": p.epoch, "epochs": p.epochs, "best_epoch": p.best_epoch}
    return [(_PRIOR_EPOCH_UPSERT, values), (_PRIOR_RUN_RESULT, result)]


@projects(MemorizationWarning)
def _memorization_warning(e: Event, p: MemorizationWarning) -> list[Statement]:
    sql = (
        f"INSERT INTO memorization_warnings (run_id, seq, {', '.join(MEMORIZATION_COLUMNS)})"
        f" VALUES (?, ?{', ?' * len(MEMORIZATION_COLUMNS)})"
    )
    return [(sql, (e.run_id, e.seq, *(getattr(p, name) for name in MEMORIZATION_COLUMNS)))]


@projects(CopiesMeasured)
def _copies_measured(e: Event, p: CopiesMeasured) -> list[Statement]:
    """Runs recorded before GenerationMeasured: their copy rate (replayed code runs)."""
    return [("UPDATE runs SET copy_rate = ? WHERE run_id = ?", (p.copy_rate, e.run_id))]


@projects(GenerationMeasured)
def _generation_measured(e: Event, p: GenerationMeasured) -> list[Statement]:
    """The run's copy_rate column holds today's measure of it: the copy share."""
    return [("UPDATE runs SET copy_rate = ? WHERE run_id = ?", (p.copy_share, e.run_id))]


@projects(PriorSaved)
def _prior_saved(e: Event, p: PriorSaved) -> list[Statement]:
    # The model row keeps the run that trained the model; the prior's run points at it.
    sql = "UPDATE runs SET model_name = ?, model_path = ? WHERE run_id = ?"
    return [(sql, (p.name, p.path, e.run_id))]


@projects(RunCompleted)
def _run_completed(e: Event, p: RunCompleted) -> list[Statement]:
    sql = (
        "UPDATE runs SET status = 'completed', finished = ?, error = NULL,"
        " model_path = COALESCE(NULLIF(?, ''), model_path) WHERE run_id = ?"
    )
    return [
        (sql, (e.ts, p.model_path, e.run_id)),
        (_RUN_RESULT, {"run_id": e.run_id, "best_epoch": p.best_epoch, "split": TRAIN_SPLIT}),
        # The event's own number wins over the projection when both exist.
        ("UPDATE runs SET best_val_loss = ? WHERE run_id = ?", (p.best_val_loss, e.run_id)),
    ]


def _ended(e: Event, status: str, error: str | None, checkpoint: str | None) -> list[Statement]:
    """failed, cancelled and interrupted: the status, when, why, and the checkpoint left."""
    sql = (
        "UPDATE runs SET status = ?, finished = ?, error = ?,"
        " checkpoint_path = COALESCE(?, checkpoint_path) WHERE run_id = ?"
    )
    return [(sql, (status, e.ts, error, checkpoint, e.run_id))]


@projects(RunFailed)
def _run_failed(e: Event, p: RunFailed) -> list[Statement]:
    return _ended(e, "failed", p.error, p.checkpoint_path)


@projects(RunCancelled)
def _run_cancelled(e: Event, p: RunCancelled) -> list[Statement]:
    return _ended(e, "cancelled", None, p.checkpoint_path)


@projects(RunInterrupted)
def _run_interrupted(e: Event, p: RunInterrupted) -> list[Statement]:
    return _ended(e, "interrupted", p.reason, p.checkpoint_path)
