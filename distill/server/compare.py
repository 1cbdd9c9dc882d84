"""Comparing runs on the runs list: any number of runs of one type, overlaid.

Each run is named by its model and drawn in a colour of its own (the CSS classes run0 ..
run9), in every chart: the loss per epoch (validation solid, training dashed), the loss
at every optimizer step (averaged down to MAX_POINTS points, smoothed on request as
TensorBoard smooths: an exponential moving average, debiased at the start), and beside
them what each run's health did over its epochs: a VQ-VAE's codebook utilization per
level on its training files (level 1 solid, 2 dashed, 3 dotted, 4 dash-dot), a prior's
validation perplexity. Every point names its run and value on hover.

Runs of different types are not overlaid: a VQ-VAE's reconstruction loss and a prior's
cross-entropy are not on one scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from distill.core.store import Store
from distill.events import TRAIN_SPLIT, PriorStepMetrics, StepMetrics
from distill.server.charts import Chart, Series, line_chart

MAX_COMPARED = 10  # runs in one comparison: the colours the legend can tell apart
MAX_POINTS = 300  # a step curve is averaged down to at most this many points
SMOOTHING_CHOICES = (0.0, 0.6, 0.8, 0.9, 0.95, 0.99)
LEVEL_STYLES = ("", "dashed", "dotted", "dashdot")  # level 1, 2, 3, 4
STEP_KIND = {"vqvae": StepMetrics.kind, "prior": PriorStepMetrics.kind}


def smoothing_of(value: str | None) -> float:
    """The smoothing a query asks for, one of SMOOTHING_CHOICES; anything else is 0."""
    try:
        asked = float(value or 0)
    except ValueError:
        return 0.0
    return asked if asked in SMOOTHING_CHOICES else 0.0


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so the first
    points are not pulled towards 0. weight 0 returns the values as they are."""
    if weight <= 0:
        return list(values)
    out, average = [], 0.0
    for count, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**count))
    return out


def step_curve(events: Sequence[Any]) -> list[float]:
    """A run's loss at each optimizer step, in order (a resumed epoch's steps replace the
    ones it ran before)."""
    by_step: dict[int, float] = {}
    for event in events:
        p = event.payload
        by_step[p["epoch"] * p["steps_per_epoch"] + p["step"]] = p["loss"]
    return [by_step[step] for step in sorted(by_step)]


def _buckets(curves: list[list[float]]) -> tuple[list[list[float | None]], list[int]]:
    """Curves averaged over shared buckets of steps (at most MAX_POINTS), and the step
    each bucket ends at: every run's step N lands at the same x."""
    longest = max((len(c) for c in curves), default=0)
    size = max(1, math.ceil(longest / MAX_POINTS))
    count = math.ceil(longest / size)
    averaged: list[list[float | None]] = []
    for curve in curves:
        points: list[float | None] = []
        for b in range(count):
            chunk = [v for v in curve[b * size : (b + 1) * size] if math.isfinite(v)]
            points.append(sum(chunk) / len(chunk) if chunk else None)
        averaged.append(points)
    return averaged, [min((b + 1) * size, longest) for b in range(count)]


def run_labels(runs: list[dict[str, Any]]) -> list[str]:
    """Each run by its model's name; the run id beside it where two runs share one."""
    names = [run["model_name"] or run["run_id"] for run in runs]
    return [
        f"{name} ({run['run_id']})" if names.count(name) > 1 else name
        for name, run in zip(names, runs, strict=True)
    ]


async def compare_runs(
    store: Store, run_ids: Sequence[str], smoothing: float = 0.0
) -> dict[str, Any]:
    """The context of a comparison: "compared" (each run's id, label and colour class),
    "charts" ([(title, Chart)]), or "compare_error" saying why none is drawn."""
    wanted = list(dict.fromkeys(run_ids))  # a run checked twice is compared once
    runs = [run for run_id in wanted[:MAX_COMPARED] if (run := await store.run(run_id))]
    context: dict[str, Any] = {"compared": [], "charts": [], "compare_error": None,
                               "smoothing": smoothing, "smoothing_choices": SMOOTHING_CHOICES,
                               "compare_left_out": max(0, len(wanted) - MAX_COMPARED)}  # fmt: skip
    if len({run["run_type"] for run in runs}) > 1:
        context["compare_error"] = (
            "Compare runs of one type: a VQ-VAE's loss and a prior's are not on one scale."
        )
        return context
    if not runs:
        return context
    labels = run_labels(runs)
    context["compared"] = [
        {"run_id": run["run_id"], "label": label, "css": f"run{index}"}
        for index, (run, label) in enumerate(zip(runs, labels, strict=True))
    ]
    prior = runs[0]["run_type"] == "prior"
    epochs = [
        await (store.prior_epoch_metrics if prior else store.epoch_metrics)(run["run_id"])
        for run in runs
    ]
    loss: list[Series] = []
    for index, (label, rows) in enumerate(zip(labels, epochs, strict=True)):
        loss.append(Series(f"{label} validation", f"run{index} val", [r["val_loss"] for r in rows]))
        loss.append(
            Series(f"{label} train", f"run{index} train dashed", [r["train_loss"] for r in rows])
        )
    charts = [("Loss per epoch", line_chart(loss, hover=True))]
    charts.append(await _step_chart(store, runs, labels, smoothing))
    charts.append(
        _perplexity_chart(labels, epochs) if prior else await _health_chart(store, runs, labels)
    )
    context["charts"] = charts
    return context


async def _step_chart(
    store: Store, runs: list[dict[str, Any]], labels: list[str], smoothing: float
) -> tuple[str, Chart]:
    curves = [
        smooth(step_curve(await store.events_of_kind(run["run_id"], STEP_KIND[run["run_type"]])),
               smoothing)
        for run in runs
    ]  # fmt: skip
    averaged, ends = _buckets(curves)
    series = [
        Series(label, f"run{index}", values)
        for index, (label, values) in enumerate(zip(labels, averaged, strict=True))
    ]
    title = "Training loss per step" + (f" (smoothed {smoothing:g})" if smoothing else "")
    return title, line_chart(series, x_labels=ends, x_name="optimizer step", hover=True)


async def _health_chart(
    store: Store, runs: list[dict[str, Any]], labels: list[str]
) -> tuple[str, Chart]:
    """Codebook utilization per level over the epochs, counted on the training files."""
    series = []
    for index, (run, label) in enumerate(zip(runs, labels, strict=True)):
        rows = await store.codebook_health(run["run_id"], TRAIN_SPLIT)
        by_level: dict[int, dict[int, float]] = {}
        for row in rows:
            by_level.setdefault(row["level"], {})[row["epoch"]] = row["utilization"]
        for level, values in sorted(by_level.items()):
            style = LEVEL_STYLES[(level - 1) % len(LEVEL_STYLES)]
            series.append(
                Series(f"{label} level {level}", f"run{index} {style}".strip(),
                       [values.get(e) for e in range(max(values) + 1)])
            )  # fmt: skip
    return "Codebook utilization per level (training files)", line_chart(series, hover=True)


def _perplexity_chart(labels: list[str], epochs: list[list[dict[str, Any]]]) -> tuple[str, Chart]:
    series = [
        Series(f"{label} validation perplexity", f"run{index} val",
               [r["val_perplexity"] for r in rows])
        for index, (label, rows) in enumerate(zip(labels, epochs, strict=True))
    ]  # fmt: skip
    return "Validation perplexity per epoch", line_chart(series, hover=True)
