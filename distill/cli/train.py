"""`distill train DATASET`: scan, train an RVQ-VAE, and put the model in the library."""

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
from distill.models.config import CODEBOOK_SIZES, VQVAEConfig
from distill.paths import check_model_name, data_home, mel_cache_dir
from distill.threads import requested_threads
from distill.training.bounds import MODEL_BOUNDS, TRAIN_BOUNDS
from distill.training.settings import TrainSettings
from distill.training.specs import TrainRequest

console = Console()


def train(
    dataset: Annotated[Path, typer.Argument(help="Folder of sounds (searched recursively).")],
    epochs: Annotated[
        int, typer.Option(**TRAIN_BOUNDS["epochs"].option(), help="Passes over the training set.")
    ] = TrainSettings.epochs,
    rvq_levels: Annotated[
        int,
        typer.Option(
            **MODEL_BOUNDS["rvq_levels"].option(),
            help="Fewer levels = faster, more levels = finer detail.",
        ),
    ] = VQVAEConfig.rvq_levels,
    commitment_weight: Annotated[
        float,
        typer.Option(
            **MODEL_BOUNDS["commitment_weight"].option(), help="Weight of the commitment loss."
        ),
    ] = VQVAEConfig.commitment_weight,
    codebook_size: Annotated[
        int | None,
        typer.Option(
            **MODEL_BOUNDS["codebook_size"].option(),
            help=f"Codes per level (default: {TIERS_HELP.format(*CODEBOOK_SIZES)}).",
        ),
    ] = None,
    codebook_dim: Annotated[
        int | None,
        typer.Option(
            **MODEL_BOUNDS["codebook_dim"].option(), help="Dimension codes live in (default: 32)."
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(**TRAIN_BOUNDS["batch_size"].option(), help="Windows per step.")
    ] = TrainSettings.batch_size,
    stage_steps: Annotated[
        int,
        typer.Option(
            **TRAIN_BOUNDS["stage_steps"].option(),
            help="Steps of the decoder stage, trained after the epochs; the model's sounds play "
            "through it. 0 trains none: they play through Griffin-Lim.",
        ),
    ] = TrainSettings.stage_steps,
    patience: Annotated[
        int, typer.Option(**TRAIN_BOUNDS["patience"].option(), help=PATIENCE_HELP)
    ] = TrainSettings.patience,
    model_name: Annotated[
        str | None, typer.Option(help="Name in the model library (default: timestamped).")
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            **TRAIN_BOUNDS["seed"].option(), help="Seed for the split, initialisation and sampling."
        ),
    ] = 0,
    device: DeviceOption = "auto",
    check: Annotated[
        bool, typer.Option("--check", help="Scan the dataset, print the preflight, and stop.")
    ] = False,
    json_output: EventsJsonOption = False,
    follow: FollowOption = True,
    threads: ThreadsOption = None,
    keep_best: KeepBestOption = True,
) -> None:
    """Train an RVQ-VAE on a folder of sounds."""
    requested_threads(threads)  # this run's worker reads it (a running server has its own)
    home = data_home()
    request = TrainRequest(
        dataset=str(dataset),
        model_name=model_name,
        settings={
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "device": device,
            "stage_steps": stage_steps,
            "patience": patience,
        },
        overrides={
            "rvq_levels": rvq_levels,
            "commitment_weight": commitment_weight,
            "codebook_size": codebook_size,
            "codebook_dim": codebook_dim,
        },
    )
    if model_name is not None:
        try:
            check_model_name(model_name)
        except ValueError as error:
            bad_input(console, str(error))
    render = JsonLinesRenderer() if json_output else RunRenderer(console)
    if check:
        _preflight(request, home, render)
        return
    submit_and_follow(
        request, render, console, follow=follow, json_output=json_output, keep_best=keep_best
    )


def _preflight(request: TrainRequest, home: Path, render) -> None:
    """`--check`: scan and size, in this process; nothing is trained or recorded."""
    from distill.audio.dataset import DatasetError
    from distill.training.vqvae import TrainSpec, preflight_event, prepare_data

    spec = TrainSpec(
        dataset=Path(request.dataset),
        run_dir=home / "runs" / "check",
        model_path=home / "models" / "check.distill",
        cache_dir=mel_cache_dir(home),
        settings=TrainSettings(**request.settings),
        overrides=dict(request.overrides),
    )
    try:
        render.show(preflight_event(prepare_data(spec)))
    except DatasetError as error:
        bad_input(console, str(error))
