"""`distill models`: the model library."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from distill.cli.render import health_table
from distill.core.owners import interrupt_orphans, model_in_use
from distill.core.store import Store
from distill.models.card import ModelCard, PriorCard
from distill.paths import data_home, database_path

app = typer.Typer(help="The model library: list, show, import, export, rename, rm.")
console = Console()


@app.command("show")
def show(
    model: Annotated[
        str, typer.Argument(help="A model name in the library, or a path to a .distill file.")
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print the card as JSON.")] = False,
) -> None:
    """Print a model's card (config, dataset, codebook health, loss curves) without loading weights."""
    from distill.models.library import read_metadata, resolve_model

    path = _or_exit(lambda: resolve_model(model))
    metadata = _or_exit(lambda: read_metadata(path))
    if json_output:  # the card as the file holds it (today's names)
        print(json.dumps({"path": str(path), **metadata}, indent=2))
        return
    print_card(str(path), ModelCard.from_dict(metadata, path.stem))


@app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context, json_output: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """The models in the library (bare `distill models` lists them)."""
    if ctx.invoked_subcommand is None:
        list_command(json_output)


@app.command("list")
def list_command(json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The models in the library; a file that cannot be read is listed as unreadable."""
    from distill.models.library import list_cards

    rows = []
    for listed in list_cards():
        row: dict[str, Any] = {"name": listed.path.stem, "path": str(listed.path)}
        if listed.card is None:
            rows.append({**row, "unreadable": listed.unreadable})
        else:
            rows.append({**row, **_summary(listed.card)})
    if json_output:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("no models yet: train one with `distill train FOLDER`")
        return
    table = Table(
        "name",
        "created",
        "levels",
        "codebook size",
        "worst utilization (held-out files)",
        "best val loss",
        "prior",
    )
    for row in rows:
        if "unreadable" in row:
            table.add_row(
                row["name"], f"[red]unreadable: {escape(row['unreadable'])}[/]", *[""] * 5
            )
        else:
            table.add_row(
                row["name"],
                row["created"],
                str(row["rvq_levels"]),
                str(row["codebook_size"]),
                f"{row['worst_utilization']:.0%}",
                f"{row['best_val_loss']:.4f}",
                f"ppl {row['prior_best_val_perplexity']:.2f}" if row["has_prior"] else "-",
            )
    console.print(table)


@app.command("rm")
def rm(name: Annotated[str, typer.Argument(help="A model name in the library.")]) -> None:
    """Delete a model from the library."""
    from distill.models import library

    _refuse_in_use(name)
    deleted = _or_exit(lambda: library.delete_model(name))
    asyncio.run(_in_store(lambda store: store.forget_model(name)))
    console.print(f"deleted {deleted.model}")
    if deleted.sounds is not None:
        console.print(f"the sounds it generated are kept in {deleted.sounds}")


@app.command("rename")
def rename(old: str, new: str) -> None:
    """Give a library model a new name."""
    from distill.models import library

    _refuse_in_use(old)
    path = _or_exit(lambda: library.rename_model(old, new))
    asyncio.run(_in_store(lambda store: store.rename_model(old, path.stem, str(path))))
    console.print(f"renamed {old} -> {path.stem} ({path})")


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="A .distill file to copy into the library.")],
    name: Annotated[
        str | None, typer.Option("--name", help="Its name in the library (default: file name).")
    ] = None,
) -> None:
    """Check a model file through and copy it into the library."""
    from distill.models import library

    path = _or_exit(lambda: library.import_model(file, name))
    console.print(f"imported {file} as {path.stem} ({path})", markup=False)


@app.command("export")
def export(
    name: str,
    destination: Annotated[Path, typer.Argument(help="A file or a folder to copy it to.")],
) -> None:
    """Copy a library model out as a .distill file."""
    from distill.models import library

    path = _or_exit(lambda: library.export_model(name, destination))
    console.print(f"exported {name} to {path}")


def _or_exit(action: Callable[[], Any]) -> Any:
    """Run a library action; a refused file or an OS error is a message and exit code 2.

    The library is imported by the commands that use it, not at start-up: it loads torch,
    which `distill runs` or `distill --help` should not wait for.
    """
    from distill.models.model_file import ModelFileError

    try:
        return action()
    except (ModelFileError, OSError) as error:
        console.print(f"[bold red]error:[/] {escape(str(error))}")
        raise typer.Exit(2) from error


def _summary(card: ModelCard) -> dict[str, Any]:
    return {
        "created": card.created or "",
        "rvq_levels": card.config.rvq_levels,
        "codebook_size": card.config.codebook_size,
        "worst_utilization": card.worst_utilization,
        "best_val_loss": card.training.best_val_loss,
        "has_prior": card.prior is not None,
        "prior_best_val_perplexity": (
            card.prior.training.best_val_perplexity if card.prior is not None else None
        ),
    }


def say(line: str) -> None:
    """A line of a card: its text is the file's, so never read as rich markup."""
    console.print(line, markup=False)


def print_card(path: str, card: ModelCard) -> None:
    config, dataset, training, mel = card.config, card.dataset, card.training, card.config.mel
    console.rule(f"[bold]{escape(card.name or path)}")
    say(f"file      {path}")
    say(f"created   {card.created or '?'}  (run {card.run_id or '-'})")
    say(
        f"dataset   {dataset.path}: {dataset.files} files, {dataset.seconds:.1f} s, fingerprint {dataset.fingerprint}"
    )
    say(
        f"model     {config.rvq_levels} RVQ levels x {config.codebook_size} codes (dim {config.codebook_dim}), "
        f"latent {config.latent_dim}, hidden {config.hidden_channels}, commitment weight {config.commitment_weight}"
    )
    say(
        f"audio     {mel.sample_rate} Hz, {mel.n_mels} mels, hop {mel.hop_length}, window {config.window_frames} frames"
    )
    mel_error = "?" if training.val_mel_error is None else f"{training.val_mel_error:.3f}"
    say(
        f"training  {training.epochs} epochs, best epoch {training.best_epoch + 1}, best validation loss {training.best_val_loss:.4f}, mel error on held-out sounds {mel_error}"
    )
    say(f"listening {card.listening()}")
    val_loss = card.curves.get("val_loss")
    if val_loss:
        say(f"val loss  {_sparkline(val_loss)}  {val_loss[0]:.3f} -> {val_loss[-1]:.3f}")
    if card.health:
        console.print(
            health_table(list(card.health), title="codebook health (best epoch, held-out files)")
        )
    print_prior(card.prior)


def print_prior(prior: PriorCard | None) -> None:
    if prior is None:
        say("prior     none yet (distill train-prior MODEL)")
        return
    config, training = prior.config, prior.training
    say(
        f"prior     {config.layers} layers x {config.hidden_size} hidden, {config.heads} heads, "
        f"window {config.context_steps} steps x {config.rvq_levels} levels; trained {prior.created or '?'} "
        f"(run {prior.run_id or '-'}) on {prior.dataset.files} files{_split_words(prior.dataset)}"
    )
    say(
        f"          best epoch {training.best_epoch + 1} of {training.epochs}, "
        f"best validation perplexity {training.best_val_perplexity:.2f} "
        f"(memorization warning under {training.memorization_threshold:g})"
    )
    if training.generation is not None:
        say(
            f"its sounds {training.generation.sampled_clips} clips generated after training, measured "
            "against the dataset's:"
        )
        for word, sentence in training.generation.words():
            say(f"  {word:<10} {sentence}")
    elif training.copy_rate is not None:  # a prior trained before the measure existed
        say(
            f"copies    {training.copy_rate:.0%} of clips sampled after training replay a "
            "training file"
        )
    for warning in training.memorization_warnings:
        console.print(
            f"[bold red]warning[/]   epoch {warning.epoch + 1}: {escape(warning.message)}"
        )
    curve = prior.curves.get("val_perplexity")
    if curve:
        say(f"val ppl   {_sparkline(curve)}  {curve[0]:.2f} -> {curve[-1]:.2f}")


def _sparkline(values: list[float]) -> str:
    """One bar per value; a value that is not finite (a diverged loss) is a gap."""
    bars = "▁▂▃▄▅▆▇█"
    finite = [v for v in values if math.isfinite(v)]
    low, high = min(finite, default=0.0), max(finite, default=0.0)
    span = (high - low) or 1.0
    return "".join(
        bars[int((v - low) / span * (len(bars) - 1))] if math.isfinite(v) else " " for v in values
    )


def _refuse_in_use(name: str) -> None:
    """Exit 2 with the reason when a queued or running run uses the model."""

    async def check(store: Store) -> str | None:
        await interrupt_orphans(store)
        return await model_in_use(store, name)

    busy = asyncio.run(_in_store(check))
    if busy is not None:
        console.print(f"[bold red]error:[/] {busy}")
        raise typer.Exit(2)


async def _in_store(change: Callable[[Store], Any]) -> Any:
    """`change(store)` on the record (None when there is none yet): runs that made a
    renamed or deleted model follow it, and the runs that use a model are found there."""
    database = database_path(data_home())
    if not database.exists():
        return None
    async with await Store.open(database) as store:
        return await change(store)


def _split_words(dataset) -> str:
    """ " (44 train, 8 held out)" for a prior's dataset record; "" when it did not say."""
    if dataset.train_files is None or dataset.val_files is None:
        return ""
    return f" ({dataset.train_files} train, {dataset.val_files} held out)"
