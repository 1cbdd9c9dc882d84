"""Where distill keeps things: everything lives under one data directory."""

from __future__ import annotations

import os
import re
from pathlib import Path

import platformdirs


def data_home() -> Path:
    """`DISTILL_HOME`, else the platform's user data directory; created on first use."""
    configured = os.environ.get("DISTILL_HOME")
    home = (
        Path(configured).expanduser() if configured else Path(platformdirs.user_data_dir("distill"))
    )
    home.mkdir(parents=True, exist_ok=True)
    return home.resolve()


def models_dir(home: Path | None = None) -> Path:
    """The model library: one `.distill` file per model."""
    return _subdir(home, "models")


MODEL_FILE_EXTENSION = ".distill"
CHECKPOINT_NAME = "checkpoint.distill"  # in a run's folder: where it resumes from
# Touched in a run's (or a generate request's) folder to ask its worker to stop at the next step.
CANCEL_FILE = "CANCEL"
# Touched beside CANCEL_FILE (before it) when the stop should keep the best epoch so far:
# the run saves its model as a finished run would, instead of only checkpointing.
KEEP_BEST_FILE = "KEEP_BEST"
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # fullmatch: `$` lets "\n" through


def check_model_name(name: str) -> str:
    """Names become file names: letters, digits, '.', '_' and '-', at most 100."""
    if not _MODEL_NAME.fullmatch(name) or name.endswith(MODEL_FILE_EXTENSION):
        raise ValueError(
            f"bad model name {name!r}: use letters, digits, '.', '_' or '-' (at most 100)"
        )
    return name


def model_path(name: str, home: Path | None = None) -> Path:
    """Where the model called `name` lives in the library (checked, never escapes it)."""
    return models_dir(home) / f"{check_model_name(name)}{MODEL_FILE_EXTENSION}"


def database_path(home: Path | None = None) -> Path:
    """The SQLite file: every run's events and the tables the pages read."""
    return (home or data_home()) / "distill.sqlite"


def runs_dir(home: Path | None = None) -> Path:
    """One folder per run: checkpoints and previews."""
    return _subdir(home, "runs")


def mel_cache_dir(home: Path | None = None) -> Path:
    """Log-mel spectrograms cached per audio file."""
    return _subdir(home, "cache", "mel")


def _subdir(home: Path | None, *parts: str) -> Path:
    path = (home or data_home()).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def generated_dir(home: Path | None = None) -> Path:
    """Generated clips: one folder per model, one per request inside it."""
    return _subdir(home, "generated")
