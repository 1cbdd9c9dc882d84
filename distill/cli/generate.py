"""`distill generate MODEL`: new sounds from a model's prior, written as WAV files.

A generate run (training/jobs.py), on the running server's core when there is one, so it
shows in the dashboard, else on a core in this process; the work itself is
`distill.inference.generate.generate_clips`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from distill.cli.follow import ThreadsOption, bad_input
from distill.cli.remote import submit_and_follow
from distill.events import (
    ClipGenerated,
    Event,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunQueued,
    payload_from_dict,
)
from distill.inference.spec import GENERATE_SECONDS
from distill.models.history import MANIFEST_NAME
from distill.paths import data_home, model_path
from distill.threads import requested_threads
from distill.training.bounds import SAMPLING_BOUNDS
from distill.training.specs import GenerateRequest

console = Console()


# Shared with `distill codes`, which samples from the same prior.
ModelArgument = Annotated[
    str, typer.Argument(help="A model name in the library, or a path to a .distill file.")
]
Temperature = Annotated[
    float,
    typer.Option(
        **SAMPLING_BOUNDS["temperature"].option(),
        help="0 = always the likeliest code; above 1 = wilder.",
    ),
]
TopK = Annotated[
    int,
    typer.Option(
        **SAMPLING_BOUNDS["top_k"].option(), help="Draw only from the k likeliest codes (0 = all)."
    ),
]
Seed = Annotated[
    int, typer.Option(**SAMPLING_BOUNDS["seed"].option(), help="Same seed, same result.")
]


def generate(
    model: ModelArgument,
    seconds: Annotated[
        float, typer.Option(min=0.01, max=600.0, help="Length of each clip.")
    ] = GENERATE_SECONDS,
    count: Annotated[
        int,
        typer.Option(
            **SAMPLING_BOUNDS["count"].option(),
            help="How many clips (made a few at a time: memory does not grow with it).",
        ),
    ] = 1,
    temperature: Temperature = 1.0,
    top_k: TopK = 0,
    top_p: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Draw from the likeliest codes making up this much probability (1 = all).",
        ),
    ] = 1.0,
    seed: Annotated[
        int,
        typer.Option(
            **SAMPLING_BOUNDS["seed"].option(), help="Clip i uses seed + i: same seed, same sound."
        ),
    ] = 0,
    one_shot: Annotated[
        bool | None,
        typer.Option(
            "--one-shot/--continuous",
            help="One sound per clip, cut where it has decayed (--seconds at most), or clips "
            "of exactly --seconds. Default: one-shot when the prior's training files were "
            "mostly shorter than its window.",
        ),
    ] = None,
    variation: Annotated[
        bool,
        typer.Option(
            "--variation",
            help="Variations of the training sounds: each clip keeps one training sound's "
            "coarse level (its shape) and draws the finer levels anew. For small sets.",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the WAVs (default: DISTILL_HOME/generated/MODEL/TIME)."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    threads: ThreadsOption = None,
) -> None:
    """Generate new sounds with a model's prior; prints where they are and how new they are.

    A run like any other: through a running `distill serve` (so the dashboard shows it),
    else on a core in this process. A model given as a file path, or an --out folder,
    is generated here: a server touches no file outside its data folder."""
    requested_threads(threads)  # the worker that generates reads it
    home = data_home()
    try:
        request = GenerateRequest(
            model=model,
            out=str(out) if out is not None else None,
            seconds=seconds,
            count=count,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            one_shot=one_shot,
            variation=variation,
        )
    except ValueError as error:
        bad_input(console, str(error))
    render = GenerateRenderer(json_output)
    through_server = out is None and _in_library(model, home)
    submit_and_follow(
        request, render, console, json_output=json_output, keep_best=False,
        through_server=through_server,
    )  # fmt: skip


def _in_library(model: str, home: Path) -> bool:
    try:
        return model_path(model, home).is_file()
    except ValueError:  # not a model name: a path
        return False


class GenerateRenderer:
    """A generate run's events as the CLI shows them: a line per clip as it is written,
    then the report (or, with --json, only the report) from the request's manifest."""

    def __init__(self, json_output: bool) -> None:
        self.json_output = json_output
        self.out_dir: Path | None = None

    def __call__(self, event: Event) -> None:
        payload = event.typed()
        if isinstance(payload, RunQueued):
            self.out_dir = Path(payload.config["out_dir"])
        elif isinstance(payload, ClipGenerated) and not self.json_output:
            console.print(f"[dim]{Path(payload.path).name}: {payload.seconds:.2f} s[/]")
        elif isinstance(payload, RunCompleted | RunCancelled) and self.out_dir is not None:
            self._report(self.out_dir)
        elif isinstance(payload, RunFailed):
            console.print(f"[bold red]error:[/] {payload.error}")

    def _report(self, out_dir: Path) -> None:
        manifest_path = out_dir / MANIFEST_NAME
        manifest = json.loads(manifest_path.read_text())
        clips = [_clip(c) for c in manifest["clips"]]
        wall = float(manifest["wall_seconds"])
        if self.json_output:
            report = {
                "out_dir": str(out_dir),
                "manifest_path": str(manifest_path),
                "wall_seconds": wall,
                "realtime_factor": sum(c.seconds for c in clips) / wall if wall else 0.0,
                "clips": manifest["clips"],
            }
            print(json.dumps(report, indent=2))
            return
        print_report(out_dir, clips, wall)


def _clip(data: dict[str, Any]) -> ClipGenerated:
    clip = payload_from_dict(ClipGenerated.kind, data)
    assert isinstance(clip, ClipGenerated)
    return clip


def print_report(out_dir: Path, clips: list[ClipGenerated], wall_seconds: float) -> None:
    audio_seconds = sum(clip.seconds for clip in clips)
    mode = "one-shot" if clips and clips[0].one_shot else "continuous"
    if clips and clips[0].variation_of:
        mode += " variation"
    console.print(
        f"{len(clips)} {mode} clip(s) in {wall_seconds:.1f} s "
        f"({audio_seconds / wall_seconds if wall_seconds else 0.0:.1f}x real time)"
        f" in [bold]{out_dir}[/]"
    )
    table = Table(
        "clip", "seed", "seconds", "rms", "longest run shared with training",
        "nearest training clip",
    )  # fmt: skip
    for clip in clips:
        level = f"[bold red]{clip.rms:.4f} silent[/]" if clip.silent else f"{clip.rms:.4f}"
        if clip.tries > 1:
            level += f" ({clip.tries} draws)"
        table.add_row(
            Path(clip.path).name, str(clip.seed), f"{clip.seconds:.2f}", level,
            *_copy_columns(clip),
        )  # fmt: skip
    console.print(table)
    for clip in clips:
        if clip.variation_of:
            console.print(f"{Path(clip.path).name} varies {clip.variation_of}")
    silent = [clip for clip in clips if clip.silent]
    if silent:
        console.print(
            f"[bold red]warning[/]: {len(silent)} clip(s) came out silent on every draw: the "
            "prior may be undertrained (train more --epochs) or try another --seed"
        )
    console.print(
        "[dim]a shared run is a stretch of time steps whose codes equal, at every level, a "
        "stretch of one training file (silence left out): a run of most of a clip is a copy[/]"
    )


def _copy_columns(clip: ClipGenerated) -> tuple[str, str]:
    check = clip.copy_check
    share = check.longest_run_share
    style = "bold red" if share >= 0.5 else "yellow" if share >= 0.25 else "green"
    run = f"[{style}]{check.longest_run_seconds:.2f} s ({share:.0%})[/]"
    if check.longest_run_steps:
        run += f" from {check.clip_offset_seconds:.2f} s"
    nearest = (
        f"{check.nearest_file} at {check.nearest_offset_seconds:.2f} s"
        if check.nearest_file
        else "-"
    )
    return run, nearest
