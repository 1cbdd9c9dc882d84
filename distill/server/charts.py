"""Loss curves as server-rendered SVG: numbers in, polyline coordinates out.

The template `_chart.html` draws what `line_chart` returns, so the first paint and every
live update draw a chart the same way, and the browser needs no chart library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

WIDTH, HEIGHT = 640, 240
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 12, 12, 28


@dataclass(frozen=True)
class Series:
    """One line: its legend label, CSS class, and a value per epoch (None where missing)."""

    label: str
    css: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Mark:
    """A point that says its value on hover (the chart's <title>)."""

    x: str
    y: str
    text: str


@dataclass(frozen=True)
class Line:
    label: str
    css: str
    points: str  # "x,y x,y ..." in SVG coordinates
    last: float | None  # the newest value, for the legend
    marks: tuple[Mark, ...] = ()  # hover points, where the chart asks for them

    @property
    def dot(self) -> tuple[str, str] | None:
        """The one point of a line that has only one (a polyline of one point draws
        nothing): the chart draws it as a dot."""
        if not self.points or " " in self.points:
            return None
        x, y = self.points.split(",")
        return x, y


@dataclass(frozen=True)
class Tick:
    at: float  # SVG coordinate along the axis
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    lines: list[Line]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    left: int
    right: int
    top: int
    bottom: int
    x_name: str = "epoch"  # what the x axis counts, for the legend

    @property
    def empty(self) -> bool:
        return not any(line.points for line in self.lines)


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def line_chart(
    series: list[Series],
    width: int = WIDTH,
    height: int = HEIGHT,
    x_labels: Sequence[int] | None = None,
    x_name: str = "epoch",
    hover: bool = False,
) -> Chart:
    """Scale every series into one plot: x is the epoch (1-based) or, given `x_labels`,
    what they say (the decoder stage's steps); y shares one range, which never dips under
    0 when no value does (a loss is not negative). With `hover`, every point carries a
    Mark naming its series, x and value."""
    values = [v for s in series for v in s.values if _finite(v)]
    count = max((len(s.values) for s in series), default=0)
    left, right = PAD_LEFT, width - PAD_RIGHT
    top, bottom = PAD_TOP, height - PAD_BOTTOM
    if not values:
        return Chart(width, height, [Line(s.label, s.css, "", None) for s in series], [], [],
                     left, right, top, bottom)  # fmt: skip
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    span = high - low
    floor = 0.0 if low >= 0 else -math.inf  # only positive values: no negative ticks
    low, high = max(low - 0.05 * span, floor), high + 0.05 * span

    def x_of(index: int) -> float:
        return left + (right - left) * (index / (count - 1) if count > 1 else 0.5)

    def y_of(value: float) -> float:
        return bottom - (bottom - top) * (value - low) / (high - low)

    labels = list(x_labels) if x_labels is not None else list(range(1, count + 1))
    lines = []
    for s in series:
        points = " ".join(
            f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(s.values) if _finite(v)
        )
        finite = [v for v in s.values if _finite(v)]
        marks = tuple(
            Mark(f"{x_of(i):.1f}", f"{y_of(v):.1f}", f"{s.label}, {x_name} {labels[i]}: {v:.4g}")
            for i, v in enumerate(s.values)
            if hover and _finite(v)
        )
        lines.append(Line(s.label, s.css, points, finite[-1] if finite else None, marks))
    step = max(1, math.ceil(count / 10))
    x_ticks = [Tick(x_of(i), str(labels[i])) for i in range(0, count, step)]
    y_ticks = [Tick(y_of(low + (high - low) * k / 4), f"{low + (high - low) * k / 4:.3g}")
               for k in range(5)]  # fmt: skip
    return Chart(width, height, lines, x_ticks, y_ticks, left, right, top, bottom, x_name)


def run_loss_chart(epochs: list[dict]) -> Chart:
    """A run's train, validation and commitment loss per epoch (rows of epoch_metrics)."""
    return line_chart(
        [
            Series("train loss", "train", [e["train_loss"] for e in epochs]),
            Series("validation loss", "val", [e["val_loss"] for e in epochs]),
            Series(
                "commitment loss (validation)", "commit", [e["val_commit_loss"] for e in epochs]
            ),
        ]
    )


def stage_chart(progress: list[dict], trained: dict | None) -> Chart:
    """The decoder stage's training loss (the mean so far) at each progress event, with
    its held-out loss before (the mel's pseudo-inverse) and after (the kept stage)."""
    steps = [p["step"] for p in progress]
    series = [Series("train loss (mean so far)", "train", [p["train_loss"] for p in progress])]
    if trained is not None:
        series += [
            Series("held-out: pseudo-inverse", "threshold",
                   [trained["val_loss_baseline"]] * len(steps)),
            Series("held-out: kept stage", "val", [trained["val_loss"]] * len(steps)),
        ]  # fmt: skip
    return line_chart(series, x_labels=steps, x_name="decoder stage step")


def prior_charts(epochs: list[dict], threshold: float | None) -> list[tuple[str, Chart]]:
    """A prior run's validation perplexity against its memorization threshold, and its
    train and validation loss (rows of prior_epoch_metrics)."""
    perplexity = [Series("validation perplexity", "val", [e["val_perplexity"] for e in epochs])]
    if threshold is not None:
        perplexity.append(Series("memorization threshold", "threshold", [threshold] * len(epochs)))
    loss = [
        Series("train loss", "train", [e["train_loss"] for e in epochs]),
        Series("validation loss", "val", [e["val_loss"] for e in epochs]),
    ]
    return [
        ("Validation perplexity", line_chart(perplexity)),
        ("Loss (nats per code)", line_chart(loss)),
    ]
