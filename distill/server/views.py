"""What each page and fragment shows, read from SQLite: a page is a few queries.

The run page is cut into parts (status, progress, chart, codebook, prior, warnings,
previews, scan; each run type has its own selection of them). Each part is one template fragment `_run_<part>.html` whose root element has the
id `run-<part>`; the page includes them for the first paint and the live stream renders
the same fragments again when an event changes them. So a finished run's page, read
from SQLite, looks exactly like the live one did.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from distill.core.core import Core
from distill.core.store import Store
from distill.events import (
    TRAIN_SPLIT,
    UNFINISHED_STATUSES,
    CheckpointSaved,
    ClipGenerated,
    CodebookWarning,
    CodesExtracted,
    DatasetScanned,
    DecoderStageProgress,
    DecoderStageTrained,
    EpochMetrics,
    GenerationMeasured,
    MemorizationWarning,
    ModelSaved,
    PreviewReady,
    PriorEpochMetrics,
    PriorSaved,
    PriorStepMetrics,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunInterrupted,
    RunPlaced,
    RunQueued,
    RunStarted,
    StepMetrics,
)
from distill.progress import duration, epochs_remaining, remaining_seconds
from distill.server.charts import overlay_chart, prior_charts, run_loss_chart, stage_chart

RUN_PARTS = (
    "status", "summary", "progress", "chart", "codebook", "prior", "warnings", "previews", "scan",
    "clips",
)  # fmt: skip
EPOCHS_PACED = 5  # the latest epochs whose mean length paces the time left
RUNS_PER_PAGE = 100  # rows on one page of the runs list

# The parts each type of run has; a run type not here (a load test) shows the VQ-VAE's.
PARTS_OF_RUN_TYPE: dict[str, tuple[str, ...]] = {
    "vqvae": ("status", "summary", "progress", "chart", "codebook", "warnings", "previews", "scan"),
    "prior": ("status", "summary", "progress", "chart", "prior", "warnings", "scan"),
    "generate": ("status", "progress", "clips"),
}
# The events that say how far a run is: a VQ-VAE's steps, then its decoder stage's.
STEP_KINDS_OF_RUN_TYPE = {"prior": (PriorStepMetrics.kind,)}
VQVAE_STEP_KINDS = (StepMetrics.kind, DecoderStageProgress.kind)

# Which parts of the run page an event of each kind changes.
PARTS_OF_KIND: dict[str, frozenset[str]] = {
    RunQueued.kind: frozenset({"status", "progress"}),
    RunStarted.kind: frozenset({"status", "progress"}),
    RunPlaced.kind: frozenset({"status"}),
    DatasetScanned.kind: frozenset({"scan"}),
    StepMetrics.kind: frozenset({"progress"}),
    EpochMetrics.kind: frozenset({"progress", "chart", "codebook"}),
    CodebookWarning.kind: frozenset({"warnings"}),
    PreviewReady.kind: frozenset({"previews"}),
    DecoderStageProgress.kind: frozenset({"progress", "chart"}),
    DecoderStageTrained.kind: frozenset({"progress", "chart"}),
    CheckpointSaved.kind: frozenset(),
    ModelSaved.kind: frozenset({"status"}),
    CodesExtracted.kind: frozenset({"scan", "chart", "prior"}),
    PriorStepMetrics.kind: frozenset({"progress"}),
    PriorEpochMetrics.kind: frozenset({"progress", "chart", "prior"}),
    MemorizationWarning.kind: frozenset({"warnings"}),
    GenerationMeasured.kind: frozenset({"prior"}),
    PriorSaved.kind: frozenset({"status"}),
    ClipGenerated.kind: frozenset({"progress", "clips"}),
    RunCompleted.kind: frozenset({"status", "summary", "progress"}),
    RunFailed.kind: frozenset({"status", "progress"}),
    RunCancelled.kind: frozenset({"status", "progress"}),
    RunInterrupted.kind: frozenset({"status", "progress"}),
}


def step_kinds(run: dict[str, Any]) -> tuple[str, ...]:
    return STEP_KINDS_OF_RUN_TYPE.get(run["run_type"], VQVAE_STEP_KINDS)


async def run_context(
    store: Store,
    run_id: str,
    parts: frozenset[str] | tuple[str, ...] = RUN_PARTS,
    step: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The template context for `parts` of one run's page; None if there is no such run.

    Only the parts the run's type has are built; `context["parts"]` lists them in page
    order. `step` is the newest step payload when the caller already has it (the live
    stream does), which spares a query.
    """
    run = await store.run(run_id)
    if run is None:
        return None
    prior = run["run_type"] == "prior"
    own = PARTS_OF_RUN_TYPE.get(run["run_type"], PARTS_OF_RUN_TYPE["vqvae"])
    parts = tuple(part for part in own if part in parts)
    context: dict[str, Any] = {"run": run, "run_id": run_id, "parts": parts}
    if run["run_type"] == "generate":
        return await _generate_context(store, run, context)
    if prior and {"chart", "prior", "scan"} & set(parts):
        codes = await store.latest_event(run_id, CodesExtracted.kind)
        context["codes"] = codes.payload if codes else None
    if "prior" in parts:
        measured = await store.latest_event(run_id, GenerationMeasured.kind)
        context["generation"] = measured.typed() if measured else None
    if {"progress", "chart", "prior"} & set(parts):
        epochs = await (store.prior_epoch_metrics if prior else store.epoch_metrics)(run_id)
        context["epochs"] = epochs
    if "chart" in parts:
        if prior:
            threshold = context["codes"]["memorization_threshold"] if context["codes"] else None
            context["charts"] = prior_charts(context["epochs"], threshold)
        else:
            context["charts"] = [("Loss", run_loss_chart(context["epochs"]))]
            progress = await store.events_of_kind(run_id, DecoderStageProgress.kind)
            if progress:
                trained = await store.latest_event(run_id, DecoderStageTrained.kind)
                chart = stage_chart([e.payload for e in progress],
                                    trained.payload if trained else None)  # fmt: skip
                context["charts"].append(("Decoder stage loss", chart))
    if "progress" in parts:
        if step is None and run["status"] in UNFINISHED_STATUSES:
            latest = await store.latest_event(run_id, *step_kinds(run))
            step = latest.payload if latest else None
        context["step"] = step if run["status"] in UNFINISHED_STATUSES else None
        context["progress"] = progress_of(run, step, [e["seconds"] for e in context["epochs"]])
    if "codebook" in parts:
        health = await store.codebook_health(run_id)
        last = max((h["epoch"] for h in health), default=None)
        context["levels"] = [h for h in health if h["epoch"] == last]
        train_health = await store.codebook_health(run_id, TRAIN_SPLIT)
        context["train_levels"] = [h for h in train_health if h["epoch"] == last]
        context["levels_epoch"] = last
    if {"warnings", "summary"} & set(parts):
        warnings = store.memorization_warnings if prior else store.codebook_warnings
        context["warnings"] = await warnings(run_id)
    if "summary" in parts:
        context["summary"] = await summary_of(store, run, context["warnings"])
    if "previews" in parts:
        preview = await store.latest_event(run_id, PreviewReady.kind)
        context["preview"] = preview.payload if preview else None
    if "scan" in parts and not prior:
        scan = await store.latest_event(run_id, DatasetScanned.kind)
        context["scan"] = scan.payload if scan else None
    return context


async def _generate_context(
    store: Store, run: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    """A generate run's page: its clips so far (each in the model's history, when its
    folder is there) and how many of how many."""
    clips = [
        event.payload for event in await store.events_of_kind(run["run_id"], ClipGenerated.kind)
    ]
    out_dir = Path(run["spec"].get("out_dir", ""))
    history = out_dir.parent.name == run["model_name"] and out_dir.parent.parent.name == "generated"
    context["clips"] = clips
    context["clips_folder"] = out_dir.name if history else None
    context["progress"] = progress_of(run, None)
    return context


async def summary_of(
    store: Store, run: dict[str, Any], warnings: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """A finished run in a few lines: how it ended, how long it took, its best epoch and
    what it scored there, and whether anything warned; None before it completes."""
    if run["status"] != "completed":
        return None
    event = await store.latest_event(run["run_id"], RunCompleted.kind)
    if event is None:
        return None
    done = event.typed()
    assert isinstance(done, RunCompleted)
    stage = await store.latest_event(run["run_id"], DecoderStageTrained.kind)
    return {
        "done": done,
        "stage": stage.typed() if stage else None,
        "stop_words": done.stop_words(run.get("epochs") or done.epochs_run),
        "warning_count": len(warnings),
    }


def progress_of(
    run: dict[str, Any], step: dict[str, Any] | None, epoch_seconds: list[float] | None = None
) -> dict[str, Any]:
    """Share of the run done (0..1), the words for it and the time left (progress.py), from
    the run row, its last step, and (for the time left) its finished epochs' seconds."""
    epochs = run.get("epochs") or 0
    done_epochs = (run["epoch"] + 1) if run.get("epoch") is not None else 0
    if run["run_type"] == "generate":  # its clips stand where a training run's epochs do
        count = epochs or int(run["spec"].get("count") or 1)
        writing = "" if run["status"] != "running" else "…"
        label = f"{done_epochs} of {count} clips written{writing}"
        if run["status"] == "queued":
            label = "queued: waiting for a worker"
        done = 1.0 if run["status"] == "completed" else done_epochs / count
        return {"fraction": done, "label": label, "eta": None}
    if run["status"] == "completed":
        return {
            "fraction": 1.0,
            "label": f"{done_epochs or epochs} of {epochs} epochs",
            "eta": None,
        }
    fraction = done_epochs / epochs if epochs else 0.0
    eta: str | None = None
    label = f"epoch {min(done_epochs + 1, epochs) if epochs else 1} of {epochs or '?'}"
    if step is not None and run["status"] in UNFINISHED_STATUSES and "steps_per_epoch" not in step:
        # a DecoderStageProgress: the epochs are done, the decoder stage trains
        label = (
            f"{done_epochs or epochs} of {epochs} epochs; decoder stage, step {step['step']} of "
            f"{step['steps']}, loss {step['train_loss']:.4f}"
        )
        fraction = 1.0
        left = remaining_seconds(step["step"], step["steps"], step.get("seconds", 0.0))
        eta = f"decoder stage: about {duration(left)} left" if left is not None else None
    elif step is not None and run["status"] in UNFINISHED_STATUSES and epochs:
        within = (step["step"] + 1) / step["steps_per_epoch"]
        fraction = (step["epoch"] + within) / epochs
        label = (
            f"epoch {step['epoch'] + 1} of {epochs}, step {step['step'] + 1}"
            f" of {step['steps_per_epoch']}, loss {step['loss']:.4f}"
        )
        seconds = epoch_seconds or []
        since = time.time() - run["started"] if run.get("started") else 0.0
        left = epochs_remaining(seconds[-EPOCHS_PACED:], epochs - step["epoch"], within, since)
        if left is not None:
            stage = " (then the decoder stage)" if run["run_type"] == "vqvae" else ""
            eta = f"epochs: about {duration(left)} left{stage}"
    elif run["status"] == "queued":
        label = "queued: waiting for a worker"
    return {"fraction": min(max(fraction, 0.0), 1.0), "label": label, "eta": eta}


async def dashboard_context(store: Store, steps: dict[str, dict[str, Any]] | None = None) -> dict:
    """Active runs with their progress, and the latest runs."""
    active = await store.runs(status="running") + await store.runs(status="queued")
    steps = steps or {}
    for run in active:
        step = steps.get(run["run_id"])
        if step is None:
            latest = await store.latest_event(run["run_id"], *step_kinds(run))
            step = latest.payload if latest else None
        run["progress"] = progress_of(run, step)
    return {"active_runs": active, "recent_runs": await store.runs(limit=10)}


def cluster_context(core: Core) -> dict[str, Any]:
    """The dashboard's cluster panel: where jobs run, its workers, and whether it is gone."""
    if core.cluster is None or core.cluster_runner is None:
        return {"cluster": None}
    return {
        "cluster": {
            "address": core.cluster.address,
            "warning": core.cluster.warning(),
            "lost": core.runner.unavailable(),
            "workers": core.cluster_runner.workers(),
        }
    }


async def runs_context(
    store: Store, status: str | None, dataset: str | None, compare: list[str], page: int = 1
) -> dict[str, Any]:
    """One page of the runs list with its filters, and up to two runs' curves overlaid.

    Runs of different types are not overlaid: a VQ-VAE's reconstruction loss and a
    prior's cross-entropy are not on one scale.
    """
    offset = (page - 1) * RUNS_PER_PAGE
    runs = await store.runs(status=status, dataset=dataset, limit=RUNS_PER_PAGE + 1, offset=offset)
    has_older, runs = len(runs) > RUNS_PER_PAGE, runs[:RUNS_PER_PAGE]
    datasets = sorted({d["dataset"] for d in await store.datasets()} | {r["dataset"] for r in runs})
    compared = [run for run_id in compare[:2] if (run := await store.run(run_id)) is not None]
    overlay, compare_error = None, None
    if len({run["run_type"] for run in compared}) > 1:
        compare_error = (
            "Compare two runs of the same type: a VQ-VAE's loss and a prior's are not on one scale."
        )
    elif compared:
        overlay = overlay_chart(
            [(run["run_id"], await _epoch_rows(store, run)) for run in compared]
        )
    return {
        "runs": runs,
        "datasets": datasets,
        "status": status or "",
        "dataset": dataset or "",
        "compare": [run["run_id"] for run in compared],
        "overlay": overlay,
        "compare_error": compare_error,
        "page": page,
        "first_shown": offset + 1,
        "newer_query": _runs_query(page - 1, status, dataset) if page > 1 else None,
        "older_query": _runs_query(page + 1, status, dataset) if has_older else None,
    }


def _runs_query(page: int, status: str | None, dataset: str | None) -> str:
    """The query of the runs list at `page`, with the same filters (the page puts it
    after url_for('runs'), so the link stays under the app's root path)."""
    filters = {"status": status, "dataset": dataset}
    return urlencode({"page": page, **{k: v for k, v in filters.items() if v}})


async def _epoch_rows(store: Store, run: dict[str, Any]) -> list[dict[str, Any]]:
    """A run's per-epoch train and validation loss, from its type's table."""
    if run["run_type"] == "prior":
        return await store.prior_epoch_metrics(run["run_id"])
    return await store.epoch_metrics(run["run_id"])


def short_path(path: str | None) -> str:
    """A folder's last two parts: enough to tell datasets apart in a table."""
    if not path:
        return "-"
    parts = Path(path).parts
    return str(Path(*parts[-2:])) if len(parts) >= 2 else path
