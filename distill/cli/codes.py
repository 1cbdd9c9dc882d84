"""`distill codes`: a sound as its model's code grid, in a JSON file you can edit, decode
and regenerate stretches of (the code editor's operations, in the terminal)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from distill.cli.follow import EXIT_BAD_INPUT
from distill.cli.generate import ModelArgument, Seed, Temperature, TopK
from distill.threads import fit_threads

app = typer.Typer(help="A sound's codes: encode it, decode a codes file, regenerate a range.")
console = Console()


@app.callback()
def _threads() -> None:
    """Every codes command runs torch in this process: fit its threads before it loads."""
    fit_threads(1)


CodesArgument = Annotated[
    Path, typer.Argument(help="A codes file (JSON) made by `distill codes encode`.")
]


def _fail(error: Exception) -> typer.Exit:
    console.print(f"[bold red]error:[/] {error}")
    return typer.Exit(EXIT_BAD_INPUT)


@app.command("encode")
def encode(
    model: ModelArgument,
    sound: Annotated[Path, typer.Argument(help="An audio file.")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write the codes (default: SOUND.codes.json).")
    ] = None,
) -> None:
    """Encode a sound into the model's codes: one row per RVQ level, one code per time step."""
    from distill.files import write_atomically
    from distill.inference.codes import CodesError, encode_file
    from distill.models.library import load_vqvae, resolve_model
    from distill.models.model_file import ModelFileError

    target = out or sound.with_name(f"{sound.name}.codes.json")
    try:
        path = resolve_model(model)
        vqvae, card = load_vqvae(path)
        grid = encode_file(vqvae, card.name, sound)
        write_atomically(target, json.dumps(grid.to_json()))
    except (ModelFileError, CodesError, OSError) as error:
        raise _fail(error) from error
    levels, steps = grid.codes.shape
    console.print(
        f"{target}: {levels} levels x {steps} steps ({grid.seconds:.2f} s) of model {card.name}"
    )


@app.command("decode")
def decode(
    model: ModelArgument,
    codes: CodesArgument,
    out: Annotated[
        Path | None, typer.Option(help="Where to write the WAV (default: CODES.wav).")
    ] = None,
) -> None:
    """Turn a codes file back into sound, through the model's decoder stage when it has one."""
    from distill.audio.decode import write_wav
    from distill.inference.codes import CodesError, check_belongs, decode_grid, read_codes
    from distill.models.library import load_vqvae, resolve_model
    from distill.models.model_file import ModelFileError

    target = out or codes.with_suffix(".wav")
    try:
        vqvae, card = load_vqvae(resolve_model(model))
        grid = read_codes(codes)
        check_belongs(grid, vqvae, card.name)
        write_wav(target, decode_grid(vqvae, grid), grid.sample_rate)
    except (ModelFileError, CodesError, OSError, ValueError) as error:
        raise _fail(error) from error
    console.print(f"{target}: {grid.seconds:.2f} s")


@app.command("regenerate")
def regenerate(
    model: ModelArgument,
    codes: CodesArgument,
    start: Annotated[float, typer.Option(min=0.0, help="Start of the range, in seconds.")],
    end: Annotated[float, typer.Option(min=0.0, help="End of the range, in seconds.")],
    seed: Seed = 0,
    temperature: Temperature = 1.0,
    top_k: TopK = 0,
    out: Annotated[
        Path | None, typer.Option(help="Where to write the new codes (default: CODES with -regen).")
    ] = None,
) -> None:
    """Draw the range anew with the model's prior, after what comes before it; of a few
    draws, keep the one that leads best into what comes after."""
    from distill.files import write_atomically
    from distill.inference.codes import CodesError, check_belongs, read_codes, seconds_to_steps
    from distill.inference.regenerate import regenerate as regenerate_range
    from distill.inference.regenerate import silent_stretch_message
    from distill.models.library import load_with_prior, resolve_model
    from distill.models.model_file import ModelFileError
    from distill.models.sampling import Sampling

    target = out or codes.with_name(f"{codes.stem}-regen.json")
    try:
        loaded = load_with_prior(resolve_model(model))
        grid = read_codes(codes)
        check_belongs(grid, loaded.vqvae, loaded.card.name)
        first, last = seconds_to_steps(grid, start, end)
        sampling = Sampling(temperature=temperature, top_k=top_k)
        result = regenerate_range(loaded, grid, first, last, sampling, seed)
        write_atomically(target, json.dumps(result.grid.to_json()))
    except (ModelFileError, CodesError, OSError, ValueError) as error:
        raise _fail(error) from error
    console.print(f"{target}: steps {first} to {last} of {grid.steps} drawn anew (seed {seed})")
    if result.silent:
        said = silent_stretch_message(result.draws, result.silent_steps, last - first)
        console.print(f"[yellow]warning:[/] {said}")
