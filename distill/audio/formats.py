"""Which files of a dataset folder distill reads: torch-free, so whoever lists a folder
without decoding it (the cluster runner shipping a dataset to a worker) asks the same
question the scan does."""

from __future__ import annotations

from pathlib import Path

# Only formats the bundled libsndfile decodes reliably; checking the extension
# first keeps us from "successfully" sniffing odd containers we never tested.
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".aif", ".aiff", ".aifc", ".ogg", ".oga", ".opus", ".mp3"}
)


def find_audio_files(root: Path) -> list[Path]:
    """Every regular file under `root`, recursively, sorted; hidden files left out.

    Files of other formats are listed too: a scan names each one it skips, and why."""
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return sorted(files)


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_EXTENSIONS
