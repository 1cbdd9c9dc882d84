"""User files served over HTTP: previews under a run's folder, models in the library,
generated clips in a model's history.

Never StaticFiles for these (it has had traversal bugs): every path from a URL is checked
part by part, resolved (following symlinks) and must still lie inside the folder it was
meant for. `..`, absolute paths, encoded slashes and backslashes, and symlinks that point
outside all end in `FileRefused`.
"""

from __future__ import annotations

import re
from pathlib import Path

from distill.paths import generated_dir, model_path, models_dir, runs_dir

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # fullmatch: `$` lets "\n" through
PREVIEW_SUFFIXES = frozenset({".wav", ".png"})
GENERATED_SUFFIXES = frozenset({".wav"})


class FileRefused(LookupError):
    """The path names no file this route may serve."""


def confined(home: Path, base: Path, relative: str) -> Path:
    """`base / relative`, resolved, refused unless it is a regular file inside `base`.

    `base` itself is not resolved: a symlinked folder such as runs/NAME -> /elsewhere
    would otherwise become the root it is checked against, and lead out of `home`."""
    if not relative or "\\" in relative or "\x00" in relative or relative.startswith("/"):
        raise FileRefused(f"bad path {relative!r}")
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise FileRefused(f"bad path {relative!r}")
    root = home.resolve() / base.relative_to(home)
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise FileRefused(f"no such file {relative!r}")
    return path


def run_file(home: Path, run_id: str, relative: str) -> Path:
    """A preview (WAV or PNG) in one run's folder."""
    if not RUN_ID.fullmatch(run_id):
        raise FileRefused(f"bad run id {run_id!r}")
    if Path(relative).suffix.lower() not in PREVIEW_SUFFIXES:
        raise FileRefused("only previews (.wav, .png) are served from a run's folder")
    return confined(home, runs_dir(home) / run_id, relative)


def library_file(home: Path, name: str) -> Path:
    """A model in the library, by name (names are checked: they become file names)."""
    try:
        path = model_path(name, home)
    except ValueError as error:
        raise FileRefused(str(error)) from error
    return confined(home, models_dir(home), path.name)


def generated_file(home: Path, name: str, relative: str) -> Path:
    """A generated clip (or its matched training stretch) in a model's history."""
    try:
        model_path(name, home)  # checks the name
    except ValueError as error:
        raise FileRefused(str(error)) from error
    if Path(relative).suffix.lower() not in GENERATED_SUFFIXES:
        raise FileRefused("only generated clips (.wav) are served from a model's history")
    return confined(home, generated_dir(home) / name, relative)
