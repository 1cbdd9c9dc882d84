"""`distill train DATASET`: scan, train an RVQ-VAE, and put the model in the library."""

from __future__ import annotations

import secrets
import signal
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from distill.audio.dataset import DatasetError
from distill.cli.render import JsonLinesRenderer, RunRenderer
from distill.models.config import MAX_RVQ_LEVELS, MIN_RVQ_LEVELS
from distill.models.library import model_path
from distill.paths import data_home, mel_cache_dir, runs_dir
from distill.training.vqvae import (
    TrainSettings,
    TrainSpec,
    preflight_event,
    prepare_data,
    train_vqvae,
)

console = Console()


def new_run_id() -> str:
    """Sortable by start time, unique enough for one machine."""
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def train(
    dataset: Annotated[Path, typer.Argument(help="Folder of sounds (searched recursively).")],
    epochs: Annotated[
        int, typer.Option(min=1, help="Passes over the training set.")
    ] = TrainSettings.epochs,
    rvq_levels: Annotated[
        int,
        typer.Option(
            min=MIN_RVQ_LEVELS,
            max=MAX_RVQ_LEVELS,
            help="Fewer levels = faster, more levels = finer detail.",
        ),
    ] = 3,
    commitment_weight: Annotated[
        float, typer.Option(min=0.0, help="Weight of the commitment loss.")
    ] = 0.25,
    codebook_size: Annotated[
        int | None,
        typer.Option(
            min=2, help="Codes per level [default: 64/128/256 for <=20/<=100/more files]."
        ),
    ] = None,
    codebook_dim: Annotated[
        int | None, typer.Option(min=1, help="Dimension codes live in [default: 32].")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Windows per step.")
    ] = TrainSettings.batch_size,
    model_name: Annotated[
        str | None, typer.Option(help="Name in the model library [default: timestamped].")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the split, initialisation and sampling.")] = 0,
    check: Annotated[
        bool, typer.Option("--check", help="Scan the dataset, print the preflight, and stop.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print events as JSON lines.")
    ] = False,
) -> None:
    """Train an RVQ-VAE on a folder of sounds."""
    home = data_home()
    run_id = new_run_id()
    name = model_name or f"model-{run_id}"
    try:
        destination = model_path(name, home)
    except ValueError as error:
        _bad_input(str(error))
    if destination.exists():
        _bad_input(f"a model named {name!r} already exists: {destination}")
    spec = TrainSpec(
        dataset=dataset,
        run_dir=runs_dir(home) / run_id,
        model_path=destination,
        cache_dir=mel_cache_dir(home),
        settings=TrainSettings(epochs=epochs, batch_size=batch_size, seed=seed),
        overrides={
            "rvq_levels": rvq_levels,
            "commitment_weight": commitment_weight,
            "codebook_size": codebook_size,
            "codebook_dim": codebook_dim,
        },
        run_id=run_id,
    )
    render = JsonLinesRenderer() if json_output else RunRenderer(console)
    if check:
        try:
            render(preflight_event(prepare_data(spec)))
        except DatasetError as error:
            _bad_input(str(error))
        return

    stop_requested = False

    def request_stop(signum, frame) -> None:
        nonlocal stop_requested
        if stop_requested:  # a second Ctrl-C means now
            raise KeyboardInterrupt
        stop_requested = True
        console.print("[yellow]stopping after this step (Ctrl-C again to abort)...[/]")

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        train_vqvae(spec, render, should_stop=lambda: stop_requested)
    except DatasetError as error:
        raise typer.Exit(2) from error  # the renderer has shown RunFailed with the reason
    except Exception as error:
        raise typer.Exit(1) from error
    finally:
        signal.signal(signal.SIGINT, previous)
    if stop_requested:
        raise typer.Exit(1)


def _bad_input(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)
