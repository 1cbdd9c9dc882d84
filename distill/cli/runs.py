"""`distill runs`: past and present runs, read from SQLite; follow, cancel, resume."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table

from distill.cli.follow import EXIT_BAD_INPUT, bad_input, exit_code, exit_code_of_run, render_stream
from distill.cli.remote import Remote, RemoteError, find_server
from distill.cli.render import JsonLinesRenderer, RunRenderer, health_table, stage_words
from distill.core.core import Core, RunError
from distill.core.owners import interrupt_orphans
from distill.core.store import Store, UnknownStatus, check_status
from distill.events import (
    RUN_STATUSES,
    TRAIN_SPLIT,
    VAL_SPLIT,
    ClipGenerated,
    DecoderStageTrained,
    LevelHealth,
    RunCompleted,
    payload_from_dict,
)
from distill.paths import data_home, database_path
from distill.progress import duration
from distill.training.jobs import RUN_TYPES

app = typer.Typer(help="Training runs, past and present.", invoke_without_command=True)
console = Console()
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.callback()
def list_runs(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help=f"Only runs with this status: {', '.join(RUN_STATUSES)}.")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Only runs on this dataset folder.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    if status is not None:
        try:
            check_status(status)
        except UnknownStatus as error:
            bad_input(console, str(error))
    rows = asyncio.run(_read(lambda store: store.runs(status=status, dataset=dataset)))
    if json_output:
        print(json.dumps([_public(r) for r in rows], indent=2, default=str))
        return
    if not rows:
        filtered = status is not None or dataset is not None
        console.print("no runs match" if filtered else "no runs yet: `distill train FOLDER`")
        return
    table = Table(
        "type",
        "status",
        "dataset",
        "epochs",
        "mel error",
        "worst level (training files)",
        "best val ppl",
        "model",
    )
    table.columns[0:0] = [Column("run", no_wrap=True)]
    for r in rows:
        table.add_row(
            r["run_id"],
            r["run_type"],
            _status(r["status"]),
            Path(r["dataset"]).name,
            f"{(r['epoch'] + 1) if r['epoch'] is not None else 0}/{r['epochs']}"
            if r["epochs"]
            else "-",
            _num(r.get("val_mel_error"), 3),
            f"{r['worst_utilization']:.0%}" if r["worst_utilization"] is not None else "-",
            _num(r.get("best_val_perplexity"), 2),
            r["model_name"] or "-",
        )
    console.print(table)


@app.command("show")
def show(run_id: str, json_output: JsonOption = False) -> None:
    """A run's full report, from SQLite: also for runs that ended long ago."""

    async def report(store: Store) -> dict[str, Any]:
        run = await store.run(run_id)
        if run is None:
            return {}
        return {
            **_public(run),
            "epoch_metrics": await store.epoch_metrics(run_id),
            "codebook_health": await store.codebook_health(run_id, VAL_SPLIT),
            "train_codebook_health": await store.codebook_health(run_id, TRAIN_SPLIT),
            "codebook_warnings": await store.codebook_warnings(run_id),
            "prior_epoch_metrics": await store.prior_epoch_metrics(run_id),
            "memorization_warnings": await store.memorization_warnings(run_id),
            "completed": await _payload(store, run_id, RunCompleted.kind),
            "decoder_stage": await _payload(store, run_id, DecoderStageTrained.kind),
            "clips": [e.payload for e in await store.events_of_kind(run_id, ClipGenerated.kind)],
        }

    data = asyncio.run(_read(report))
    if not data:
        bad_input(console, f"no run {run_id!r}")
    if json_output:
        print(json.dumps(data, indent=2, default=str))
        return
    _print_report(data)


@app.command("follow")
def follow(
    run_id: str,
    after: Annotated[
        int, typer.Option(min=0, help="Only the events after this seq (a --json line's seq).")
    ] = 0,
    json_output: JsonOption = False,
) -> None:
    """Show a run from its first event (or after a seq), then live until it ends."""
    render = JsonLinesRenderer() if json_output else RunRenderer(console)
    raise typer.Exit(asyncio.run(_follow(run_id, render, resume=False, after=after)))


@app.command("resume")
def resume(run_id: str, json_output: JsonOption = False) -> None:
    """Go on from the run's last checkpoint, and follow it."""
    render = JsonLinesRenderer() if json_output else RunRenderer(console)
    raise typer.Exit(asyncio.run(_follow(run_id, render, resume=True)))


@app.command("cancel")
def cancel(
    run_id: str,
    keep_best: Annotated[
        bool,
        typer.Option(
            "--keep-best",
            help="Save the best epoch so far as the model (the run ends completed) instead "
            "of only checkpointing it for a resume.",
        ),
    ] = False,
) -> None:
    """Stop a queued or running run; it keeps its last checkpoint (or, with --keep-best,
    its best epoch so far as the model)."""

    async def go() -> None:
        async with Core(data_home()) as core:
            await core.cancel(run_id, keep_best)

    remote = find_server(data_home())
    try:
        asyncio.run(remote.cancel(run_id, keep_best) if remote else go())
    except (RunError, RemoteError) as error:
        bad_input(console, str(error))
    then = "saves its best epoch so far" if keep_best else "checkpoints"
    console.print(f"asked run {run_id} to stop; it {then} at the next step")


async def _follow(run_id: str, render, resume: bool, after: int = 0) -> int:
    remote = await asyncio.to_thread(find_server, data_home())
    if remote is not None:
        return await _follow_remote(remote, run_id, render, resume, after)
    async with Core(data_home(), run_types=RUN_TYPES) as core:
        try:
            if resume:
                after = await core.store.last_seq(run_id)
                await core.resume(run_id)
            events = core.follow(run_id, after_seq=after)
            terminal = await render_stream(events, render, lambda: core.cancel(run_id), console)
            if terminal is None and after:  # it ended at or before `after`: say how
                return exit_code_of_run(await core.store.run(run_id) or {"status": "?"})
        except RunError as error:
            console.print(f"[bold red]error:[/] {error}")
            return EXIT_BAD_INPUT
        return exit_code(terminal)


async def _follow_remote(remote: Remote, run_id: str, render, resume: bool, after: int) -> int:
    """A server is running: follow (or resume) the run through it."""
    try:
        after = await remote.resume(run_id) if resume else after
        events = remote.follow(run_id, after_seq=after)
        terminal = await render_stream(events, render, lambda: remote.cancel(run_id), console)
        if terminal is None and after:  # it ended at or before `after`: say how
            return exit_code_of_run(await remote.run(run_id))
    except RemoteError as error:
        console.print(f"[bold red]error:[/] {error}")
        return EXIT_BAD_INPUT
    return exit_code(terminal)


async def _payload(store: Store, run_id: str, kind: str) -> dict[str, Any] | None:
    """The run's latest event of this kind, as its payload; None when it has none."""
    event = await store.latest_event(run_id, kind)
    return event.payload if event else None


async def _read(query):
    """`query(store)`, after ending the runs of processes that are gone (core/owners.py)."""
    store = await Store.open(database_path(data_home()))
    try:
        await interrupt_orphans(store)
        return await query(store)
    finally:
        await store.close()


def _print_report(data: dict[str, Any]) -> None:
    console.rule(f"run {data['run_id']}")
    console.print(
        f"status: {_status(data['status'])}" + (f" ({data['error']})" if data.get("error") else "")
    )
    console.print(f"dataset: {data['dataset']}")
    console.print(f"created {_when(data['created'])}, finished {_when(data.get('finished'))}")
    if data["clips"] or data["run_type"] == "generate":
        console.print(f"{len(data['clips'])} of {data.get('epochs') or '?'} clips written")
        for clip in data["clips"]:
            silent = " [bold red]silent[/]" if clip.get("silent") else ""
            console.print(f"  {clip['path']} ({clip['seconds']:.2f} s){silent}")
    metrics = data["epoch_metrics"]
    if metrics:
        table = Table(
            "epoch", "mel error", "train loss", "val loss", "val commit", "seconds",
            title="epochs (mel error: held-out sounds' own frames)",
        )  # fmt: skip
        for m in metrics:
            marker = " *" if m["epoch"] == data.get("best_epoch") else ""
            table.add_row(
                f"{m['epoch'] + 1}{marker}", _num(m.get("val_mel_error"), 3),
                _num(m["train_loss"]), _num(m["val_loss"]), _num(m["val_commit_loss"]),
                f"{m['seconds']:.1f}",
            )  # fmt: skip
        console.print(table)
    best = data.get("best_epoch")
    for key, files in (
        ("train_codebook_health", "training files"),
        ("codebook_health", "held-out files"),
    ):
        levels = [h for h in data[key] if h["epoch"] == best]
        if levels and best is not None:  # no best epoch: no epoch health matches
            health = [
                LevelHealth(**{k: h[k] for k in LevelHealth.__dataclass_fields__}) for h in levels
            ]
            console.print(
                health_table(health, title=f"codebook health (epoch {best + 1}, {files})")
            )
    prior_metrics = data["prior_epoch_metrics"]
    if prior_metrics:
        table = Table(
            "epoch", "train loss", "val loss", "val perplexity", "seconds", title="prior epochs"
        )
        for m in prior_metrics:
            marker = " *" if m["epoch"] == data.get("best_epoch") else ""
            table.add_row(
                f"{m['epoch'] + 1}{marker}", _num(m["train_loss"]), _num(m["val_loss"]),
                _num(m["val_perplexity"], 2), f"{m['seconds']:.1f}",
            )  # fmt: skip
        console.print(table)
    _print_ending(data)
    warnings = data["codebook_warnings"] + data["memorization_warnings"]
    for w in warnings:
        console.print(f"[bold red]warning[/] epoch {w['epoch'] + 1}: {w['message']}")
    if data["status"] == "completed" and not warnings:
        console.print("no warnings")
    if data.get("model_path"):
        console.print(f"model: [bold]{data['model_path']}[/]")
    elif data.get("checkpoint_path"):
        console.print(
            f"checkpoint: {data['checkpoint_path']} (distill runs resume {data['run_id']})"
        )


def _print_ending(data: dict[str, Any]) -> None:
    """How a completed run ended: its total time, an early stop, its decoder stage and
    its copy rate, in the words the end of a followed run uses (cli/render.py)."""
    stage = data.get("decoder_stage")
    if stage is not None:
        trained = payload_from_dict(DecoderStageTrained.kind, stage)
        assert isinstance(trained, DecoderStageTrained)
        console.print(stage_words(trained))
    if data.get("copy_rate") is not None:
        console.print(
            f"copy rate: {data['copy_rate']:.0%} of clips sampled from the kept prior replay "
            "a training file"
        )
    completed = data.get("completed")
    if completed is not None:
        done = payload_from_dict(RunCompleted.kind, completed)
        assert isinstance(done, RunCompleted)
        console.print(f"total time: {duration(done.seconds)}")
        words = done.stop_words(data.get("epochs") or done.epochs_run)
        if words:
            console.print(f"[yellow]{words}[/]")


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _public(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "spec"}


def _status(status: str) -> str:
    colour = {"completed": "green", "failed": "red", "running": "cyan", "interrupted": "yellow"}
    return f"[{colour.get(status, 'white')}]{status}[/]"


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
