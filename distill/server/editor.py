"""The code editor: a model's "Edit" view. Open a sound (one of the model's training
files, a generated clip, an edit saved earlier), see its code grid under its mel, change
codes, hear the change, save it into the model's edits.

The page keeps the grid (and its undo history) in the browser and sends the whole grid
with each request, so the server holds no editing state. The work (encode, decode,
regenerate, save) runs in a helper process of its own (helper.edit_*), the editor's
lane (editor_lane.py): an edit never waits behind a scan in the other helper (generating
is a run), nor behind more than a piece of a long decode or a window of a long
regenerate; it keeps the model loaded between edits, and opens sounds up to
MAX_EDIT_SECONDS long; the operations themselves are inference/codes.py's and
regenerate.py's, the ones `distill codes` runs too. What the routes read from
disk themselves (the chooser's listings) runs on a thread, as in library.py, so a slow
disk never stalls the server's loop.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from distill.audio.formats import find_audio_files, is_supported
from distill.inference.codes import MAX_EDIT_SECONDS, MAX_STEPS
from distill.inference.one_shot import SILENT_DBFS
from distill.models.history import edits_dir, generation_history, saved_edits
from distill.models.library import read_card
from distill.paths import generated_dir
from distill.server import helper
from distill.server.editor_lane import decoded_wav, regenerated
from distill.server.files import FileRefused, confined
from distill.server.inputs import (
    MAX_BODY_BYTES,
    InputError,
    check_length,
    confine_dataset,
    forget_upload,
    json_int,
    json_number,
    limited,
    read_json_body,
    save_uploads,
)
from distill.server.responses import library_model, path_for, render
from distill.training.bounds import MAX_SEED, MAX_TEMPERATURE

MAX_GRID_BYTES = MAX_BODY_BYTES  # one request's grid as JSON
MAX_LISTED = 200  # training files offered on the chooser
SILENT_HEADER = "X-Distill-Silent"  # on a decoded WAV: 1 when it is silence
_EDIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


async def edit_page(request: Request) -> Response:
    """Without a sound: what can be opened. With one (?sound=, ?clip=, ?edit=): the editor."""
    name, path = library_model(request)

    async def choices() -> dict[str, Any]:  # listing folders: off the server's loop
        return await asyncio.to_thread(_choices, request, name, path)

    try:
        source = await asyncio.to_thread(_source, request, name, path)
    except (FileRefused, InputError) as error:
        context = {"name": name, "error": str(error), **await choices()}
        return render(request, "edit.html", context, 404)
    if source is None:
        return render(request, "edit.html", {"name": name, **await choices()})
    opened = await request.app.state.editor_helper.call(helper.edit_open, str(path), str(source))
    if "error" in opened and "upload" in request.query_params:
        # refused: not kept for good
        await asyncio.to_thread(forget_upload, request.app.state.settings, source)
    if "error" in opened:
        context = {"name": name, "error": opened["error"], **await choices()}
        return render(request, "edit.html", context, 400)
    context = {
        "name": name,
        "source": source.name,
        "silent_message": f"The edited sound is silence (under {SILENT_DBFS:g} dBFS RMS).",
        "opened": opened,
        "opened_json": json.dumps(
            {"grid": opened["grid"], "colours": opened["colours"], "hasPrior": opened["has_prior"]}
        ),
    }
    return render(request, "edit.html", context)


def _source(request: Request, name: str, model: Path) -> Path | None:
    home = request.app.state.settings.home
    query = request.query_params
    if any("\x00" in value for value in query.values()):
        raise FileRefused("no such sound: its name has a NUL character in it")
    if "sound" in query:
        folder = confine_dataset(read_card(model).dataset.path, request.app.state.settings)
        path = (folder / query["sound"]).resolve()
        if not path.is_relative_to(folder) or not path.is_file() or not is_supported(path):
            raise FileRefused(f"no training sound {query['sound']!r}")
        return path
    if "clip" in query:
        return confined(home, generated_dir(home) / name, query["clip"])
    if "edit" in query:
        return confined(home, edits_dir(home, name), f"{query['edit']}.codes.json")
    if "upload" in query:
        settings = request.app.state.settings
        return confined(home, settings.uploads_dir, query["upload"])
    return None


async def upload(request: Request) -> Response:
    """A sound from the user's machine, kept with the other uploads, opened in the editor."""
    name, _ = library_model(request)
    settings = request.app.state.settings
    try:
        check_length(request, settings.max_upload_bytes)
        counted = Request(request.scope, limited(request.receive, settings.max_upload_bytes))
        form = await counted.form(max_files=1, max_fields=5)
        try:
            files = [f for f in form.getlist("sound") if not isinstance(f, str)]
            folder = await save_uploads(files, settings)
        finally:
            await form.close()
    except InputError as error:  # 413 over the size limit, as the other uploads answer
        return Response(f"upload refused: {error}", status_code=error.status)
    except HTTPException as error:
        return Response(f"upload refused: {error.detail}", status_code=error.status_code)
    sound = next(folder.iterdir())
    relative = sound.relative_to(settings.uploads_dir).as_posix()
    target = path_for(request, "edit", name=name) + "?" + urlencode({"upload": relative})
    return RedirectResponse(target, status_code=303)


def _choices(request: Request, name: str, model: Path) -> dict[str, Any]:
    """The sounds the chooser offers: training files, generated clips, saved edits."""
    home = request.app.state.settings.home
    card = read_card(model)
    sounds: list[str] = []
    try:
        folder = confine_dataset(card.dataset.path, request.app.state.settings)
        sounds = [
            str(p.relative_to(folder))
            for p in find_audio_files(folder)
            if is_supported(p) and p.resolve().is_relative_to(folder)  # a link out: not offered
        ][:MAX_LISTED]
    except InputError:
        pass  # trained on a folder this server may not read
    clips = [
        f"{g['folder']}/{clip['path'].rsplit('/', 1)[-1]}"
        for g in generation_history(name, home)
        for clip in g["clips"]
    ]
    return {
        "sounds": sounds,
        "clips": clips,
        "edits": saved_edits(home, name),
        "max_edit_minutes": f"{MAX_EDIT_SECONDS / 60:g}",
    }


async def _grid_request(request: Request) -> dict[str, Any]:
    body = await read_json_body(request, MAX_GRID_BYTES)
    if not isinstance(body, dict) or not isinstance(body.get("grid"), dict):
        raise InputError("the request must carry the grid")
    return body


async def _muted_grid(request: Request) -> tuple[dict[str, Any], list[int]]:
    body = await _grid_request(request)
    muted = body.get("muted", [])
    if not isinstance(muted, list) or not all(type(m) is int for m in muted):
        raise InputError("muted must list level numbers")  # which levels: the helper's
    return body, muted


async def decode(request: Request) -> Response:
    """The grid (with levels muted, if asked) as a WAV to play; a SILENT_HEADER of 1
    when it is silence by generation's rule, so the page says so."""
    _, path = library_model(request)
    try:
        body, muted = await _muted_grid(request)
    except InputError as error:
        return JSONResponse({"error": str(error)}, error.status)
    lane = request.app.state.editor_helper
    result = await decoded_wav(lane, str(path), body["grid"], muted, client=request)
    if "abandoned" in result:  # nobody is listening
        return Response(status_code=204)
    if "error" in result:
        return JSONResponse({"error": result["error"]}, 400)
    silent = {SILENT_HEADER: "1" if result["silent"] else "0"}
    return Response(result["wav"], media_type="audio/wav", headers=silent)


async def mel(request: Request) -> Response:
    """The mel picture of the grid as edited (levels muted, if asked), as a PNG."""
    _, path = library_model(request)
    try:
        body, muted = await _muted_grid(request)
    except InputError as error:
        return JSONResponse({"error": str(error)}, error.status)
    result = await request.app.state.editor_helper.call(
        helper.edit_mel, str(path), body["grid"], muted
    )
    if "error" in result:
        return JSONResponse({"error": result["error"]}, 400)
    return Response(result["png"], media_type="image/png")


async def regenerate(request: Request) -> Response:
    """The grid with a range of steps drawn anew by the prior, window by window (a small
    edit waits for one window at most; a page that has gone stops it)."""
    _, path = library_model(request)
    try:
        body = await _grid_request(request)
        start = json_int(body.get("start"), "start", 0, MAX_STEPS)
        end = json_int(body.get("end"), "end", 1, MAX_STEPS)
        seed = json_int(body.get("seed", 0), "seed", 0, MAX_SEED)
        top_k = json_int(body.get("top_k", 0), "top_k", 0, 10**6)
        temperature = json_number(body.get("temperature", 1.0), "temperature", 0, MAX_TEMPERATURE)
    except InputError as error:
        return JSONResponse({"error": str(error)}, error.status)
    sampling = {"temperature": float(temperature), "top_k": top_k}
    lane = request.app.state.editor_helper
    result = await regenerated(
        lane, str(path), body["grid"], (start, end), sampling, seed, client=request
    )
    if "abandoned" in result:  # nobody is waiting for it
        return Response(status_code=204)
    return JSONResponse(result, 400 if "error" in result else 200)


async def save(request: Request) -> Response:
    """Keep the grid and its sound in the model's edits, under a name."""
    name, path = library_model(request)
    home = request.app.state.settings.home
    try:
        body = await _grid_request(request)
        sound_name = body.get("name")
        if not isinstance(sound_name, str) or not _EDIT_NAME.fullmatch(sound_name):
            raise InputError("name the sound with letters, digits, '.', '_' or '-'")
        overwrite = body.get("overwrite", False)
        if not isinstance(overwrite, bool):
            raise InputError("overwrite must be true or false")
        if sound_name in await asyncio.to_thread(saved_edits, home, name) and not overwrite:
            raise InputError(f"an edit named {sound_name!r} exists: replace it?", status=409)
    except InputError as error:
        return JSONResponse({"error": str(error), "exists": error.status == 409}, error.status)
    folder = str(edits_dir(home, name))
    lane = request.app.state.editor_helper
    result = await decoded_wav(lane, str(path), body["grid"], [], client=None)  # kept if left
    if "wav" in result:
        result = await lane.call(
            helper.edit_save, str(path), body["grid"], folder, sound_name, result["wav"]
        )
    return JSONResponse(result, 400 if "error" in result else 200)
