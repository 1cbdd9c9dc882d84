"""`distill generate MODEL`: new sounds from a model's prior, written as WAV files.

Runs in this process (generation takes seconds, not minutes); the work itself is
`distill.training.generate.generate_clips`, which a worker can run just the same.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from distill.cli.follow import EXIT_BAD_INPUT, ThreadsOption
from distill.events import ClipGenerated
from distill.models.copy_check import nothing_shared, run_means_something
from distill.paths import data_home
from distill.threads import fit_threads, requested_threads
from distill.training.bounds import SAMPLING_BOUNDS
from distill.training.settings import GENERATE_SECONDS

if TYPE_CHECKING:
    from distill.training.generate import GenerationResult

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
    pack: Annotated[
        Path | None,
        typer.Option(
            help="Also write the clips as a sample pack: one zip of WAVs at one level, named "
            "by model, mode and seed, with a manifest.",
        ),
    ] = None,
) -> None:
    """Generate new sounds with a model's prior; prints where they are and how new they are."""
    requested_threads(threads)
    fit_threads(1)  # this process runs torch: before its first import (distill/threads.py)
    # Imported here: the models and torch take seconds to load, which `distill --help`
    # and every other command should not wait for.
    from distill.models.library import resolve_model
    from distill.models.model_file import ModelFileError
    from distill.training.generate import GenerateSpec, generate_clips, new_out_dir
    from distill.training.sample_pack import pack_generation

    out_dir = None
    try:
        path = resolve_model(model)
        out_dir = out or new_out_dir(path.stem, data_home())
        spec = GenerateSpec(
            model_path=path,
            out_dir=out_dir,
            seconds=seconds,
            count=count,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            one_shot=one_shot,
            variation=variation,
        )
        result = generate_clips(spec)
        if pack is not None:  # training/sample_pack.py
            typer.echo(pack_generation(pack, path.stem, result.clips), err=True)
    except (ModelFileError, ValueError) as error:
        if out is None and out_dir is not None:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # made for this request, still empty: no empty history entry
        console.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(EXIT_BAD_INPUT) from error
    if json_output:
        report = {
            "out_dir": str(out_dir),
            "manifest_path": str(result.manifest_path),
            "wall_seconds": result.wall_seconds,
            "realtime_factor": result.realtime_factor,
            "clips": [clip.to_dict() for clip in result.clips],
        }
        print(json.dumps(report, indent=2))
        return
    print_report(out_dir, result)


def print_report(out_dir: Path, result: GenerationResult) -> None:
    clips = result.clips
    mode = "one-shot" if clips and clips[0].one_shot else "continuous"
    if clips and clips[0].variation_of:
        mode += " variation"
    console.print(
        f"{len(clips)} {mode} clip(s) in {result.wall_seconds:.1f} s "
        f"({result.realtime_factor:.1f}x real time) in [bold]{out_dir}[/]"
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
        if check.nearest_file and run_means_something(check.longest_run_seconds)
        else nothing_shared(check.longest_run_seconds)
    )
    return run, nearest
