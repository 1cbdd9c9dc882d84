"""`distill train-prior MODEL [DATASET]`: train a prior on a model's codes, through the core."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from distill.cli.follow import (
    PATIENCE_HELP,
    DeviceOption,
    EventsJsonOption,
    FollowOption,
    KeepBestOption,
    ThreadsOption,
    bad_input,
)
from distill.cli.remote import submit_and_follow
from distill.cli.render import JsonLinesRenderer, RunRenderer
from distill.constants import TIERS_HELP
from distill.models.config import PRIOR_SIZES
from distill.threads import requested_threads
from distill.training.bounds import PRIOR_BOUNDS, PRIOR_SIZE_BOUNDS
from distill.training.settings import PriorSettings
from distill.training.specs import PriorRequest

console = Console()


def _tiers(column: int) -> str:
    """One PRIOR_SIZES column as help text: "128/256/512 for <=20/<=100/more files"."""
    return TIERS_HELP.format(*(size[column] for size in PRIOR_SIZES))


def train_prior(
    model: Annotated[
        str, typer.Argument(help="A model name in the library, or a path to a .distill file.")
    ],
    dataset: Annotated[
        Path | None,
        typer.Argument(help="Folder of sounds (default: the one the model was trained on)."),
    ] = None,
    epochs: Annotated[
        int, typer.Option(**PRIOR_BOUNDS["epochs"].option(), help="Passes over the training codes.")
    ] = PriorSettings.epochs,
    hidden_size: Annotated[
        int | None,
        typer.Option(
            **PRIOR_SIZE_BOUNDS["hidden_size"].option(),
            help=f"Transformer width (default: {_tiers(0)}).",
        ),
    ] = None,
    layers: Annotated[
        int | None,
        typer.Option(
            **PRIOR_SIZE_BOUNDS["layers"].option(),
            help=f"Transformer blocks (default: {_tiers(1)}).",
        ),
    ] = None,
    heads: Annotated[
        int | None,
        typer.Option(
            **PRIOR_SIZE_BOUNDS["heads"].option(),
            help=f"Attention heads; must divide --hidden-size (default: {_tiers(2)}).",
        ),
    ] = None,
    learning_rate: Annotated[
        float,
        typer.Option(
            "--learning-rate",
            "--lr",
            **PRIOR_BOUNDS["learning_rate"].option(),
            help="AdamW learning rate.",
        ),
    ] = PriorSettings.learning_rate,
    batch_size: Annotated[
        int, typer.Option(**PRIOR_BOUNDS["batch_size"].option(), help="Windows per step.")
    ] = PriorSettings.batch_size,
    patience: Annotated[
        int, typer.Option(**PRIOR_BOUNDS["patience"].option(), help=PATIENCE_HELP)
    ] = PriorSettings.patience,
    seed: Annotated[
        int,
        typer.Option(**PRIOR_BOUNDS["seed"].option(), help="Seed for initialisation and crops."),
    ] = 0,
    generation_clips: Annotated[
        int,
        typer.Option(
            **PRIOR_BOUNDS["generation_clips"].option(),
            help="Clips generated after training to measure how plausible, varied and new "
            "its sounds are.",
        ),
    ] = PriorSettings.generation_clips,
    device: DeviceOption = "auto",
    json_output: EventsJsonOption = False,
    follow: FollowOption = True,
    threads: ThreadsOption = None,
    keep_best: KeepBestOption = True,
) -> None:
    """Train a prior on a model, so it can generate new sounds; the model's file keeps it."""
    requested_threads(threads)  # this run's worker reads it (a running server has its own)
    request = PriorRequest(
        model=model,
        dataset=str(dataset) if dataset is not None else None,
        settings={
            "epochs": epochs,
            "learning_rate": learning_rate,
            "batch_size": batch_size,
            "seed": seed,
            "device": device,
            "generation_clips": generation_clips,
            "patience": patience,
        },
        overrides={"hidden_size": hidden_size, "layers": layers, "heads": heads},
    )
    if hidden_size is not None and heads is not None and hidden_size % heads:
        bad_input(console, f"--heads ({heads}) must divide --hidden-size ({hidden_size})")
    render = JsonLinesRenderer() if json_output else RunRenderer(console)
    submit_and_follow(
        request, render, console, follow=follow, json_output=json_output, keep_best=keep_best
    )
