"""A model's sample pack, picked on its page: generated clips and saved edits, auditioned
on a pad grid (web/static/pack.js), downloaded as one zip (inference/sample_pack.py).

The form names each sound by where it lies in the model's history (`clip` =
FOLDER/FILE under generated/MODEL, `edit` = NAME of a saved edit); each is confined to
that history as the file routes confine theirs, and a generated clip's seed and mode are
read from its request's generation.json.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from distill.inference.sample_pack import (
    MAX_PACK_SOUNDS,
    PackError,
    PackSound,
    clip_mode,
    pack_bytes,
)
from distill.models.history import EDITS_FOLDER, MANIFEST_NAME, edits_dir, generation_history
from distill.paths import generated_dir
from distill.server.files import FileRefused, confined
from distill.server.responses import library_model


def pack_choices(home: Path, name: str) -> list[dict[str, Any]]:
    """The generated clips a pack may take, newest request first: value, file, seed, mode."""
    return [
        {
            "value": f"{g['folder']}/{Path(clip['path']).name}",
            "file": Path(clip["path"]).name,
            "seed": clip.get("seed"),
            "mode": _mode(clip),
        }
        for g in generation_history(name, home)
        for clip in g["clips"]
        if isinstance(clip, dict) and isinstance(clip.get("path"), str)
    ]


def _mode(clip: dict[str, Any]) -> str:
    """A listed clip's mode, as its generation.json entry says."""
    return clip_mode(bool(clip.get("one_shot")), str(clip.get("variation_of") or ""))


def _clip(home: Path, name: str, value: str) -> PackSound:
    path = confined(home, generated_dir(home) / name, value)
    folder = path.parent
    if path.suffix != ".wav" or path.stem.endswith("_match") or folder.name == EDITS_FOLDER:
        raise FileRefused(f"not a generated clip: {value!r}")
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
        clip = next(c for c in manifest["clips"] if Path(c["path"]).name == path.name)
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        raise FileRefused(f"{value!r} is not listed in its request's {MANIFEST_NAME}") from None
    return PackSound(path, _mode(clip), int(clip.get("seed", 0)), origin=folder.name)


def _edit(home: Path, name: str, edit: str) -> PackSound:
    path = confined(home, edits_dir(home, name), f"{edit}.wav")
    return PackSound(path, "edit", label=edit, origin=EDITS_FOLDER)


async def download_pack(request: Request) -> Response:
    """The picked sounds as one zip of WAVs at one level, with its manifest."""
    home = request.app.state.settings.home
    name, _ = library_model(request)
    form = await request.form(max_fields=2 * MAX_PACK_SOUNDS + 10)
    clips = [v for v in form.getlist("clip") if isinstance(v, str)]
    edits = [v for v in form.getlist("edit") if isinstance(v, str)]

    def pack() -> bytes:  # reading manifests and WAVs: off the server's loop
        sounds = [_clip(home, name, c) for c in clips] + [_edit(home, name, e) for e in edits]
        return pack_bytes(name, sounds)[0]

    try:
        data = await asyncio.to_thread(pack)
    except (FileRefused, PackError) as error:
        return PlainTextResponse(f"no pack: {error}", status_code=400)
    filename = f"{name}-pack.zip"
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
