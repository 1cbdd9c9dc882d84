"""A model's generated history: one folder per generate request under generated/MODEL/.

Named, listed and set aside here only, beside the model files (models/library.py), so
the model's things have one home: a rename moves the history along, a delete sets it
aside. Free of torch: the server lists histories without loading a model.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from distill.paths import generated_dir

MANIFEST_NAME = "generation.json"  # beside a request's clips: its spec and every clip's check
EDITS_FOLDER = "edits"  # generated/MODEL/edits/NAME.wav and NAME.codes.json: saved edits
DELETED_HISTORIES = "_deleted"  # generated/_deleted/NAME-TIME: a deleted model's sounds


def new_out_dir(model_name: str, home: Path | None = None) -> Path:
    """A fresh folder for one request under the model's history, generated/MODEL/TIME,
    made here: a mkdir that fails if the name is taken, so two requests in the same
    second (or thirty at once) each get their own (TIME-2, TIME-3, ...) and none writes
    over another's clips or generation.json."""
    base = generated_dir(home) / model_name
    base.mkdir(parents=True, exist_ok=True)
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    for n in itertools.count(1):
        folder = base / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise AssertionError("unreachable")


def generation_history(model_name: str, home: Path | None = None) -> list[dict[str, Any]]:
    """The manifests of a model's past requests under generated/MODEL, newest first; each
    gains "folder", the request's folder name. Unreadable manifests are left out."""
    manifests = []
    for path in sorted((generated_dir(home) / model_name).glob(f"*/{MANIFEST_NAME}")):
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and isinstance(manifest.get("clips"), list):
            manifests.append({**manifest, "folder": path.parent.name})
    return sorted(manifests, key=lambda m: (str(m.get("created", "")), m["folder"]), reverse=True)


def edits_dir(home: Path | None, name: str) -> Path:
    """Where the code editor saves a model's edits."""
    return generated_dir(home) / name / EDITS_FOLDER


def saved_edits(home: Path | None, name: str) -> list[str]:
    folder = edits_dir(home, name)
    return sorted(p.name.removesuffix(".codes.json") for p in folder.glob("*.codes.json"))


def move_history(old: str, new: str, home: Path | None = None) -> None:
    """A renamed model's history (its requests and saved edits) goes along with it; one
    left by an earlier model of the new name is set aside first."""
    history = generated_dir(home) / old
    set_aside_history(new, home)
    if history.is_dir():
        history.rename(generated_dir(home) / new)


def set_aside_history(name: str, home: Path | None = None) -> Path | None:
    """Move generated/NAME to generated/_deleted/NAME-TIME (a model name cannot start
    with '_', so no model's history is ever read from there); None if there is none."""
    history = generated_dir(home) / name
    if not history.is_dir():
        return None
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    target, n = generated_dir(home) / DELETED_HISTORIES / f"{name}-{stamp}", 1
    while target.exists():
        n += 1
        target = target.with_name(f"{name}-{stamp}-{n}")
    target.parent.mkdir(parents=True, exist_ok=True)
    history.rename(target)
    return target
