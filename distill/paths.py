"""Where distill keeps things: everything lives under one data directory."""

from __future__ import annotations

import os
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
