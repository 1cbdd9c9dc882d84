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
