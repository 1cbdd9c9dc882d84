"""The model library: each model's card, rename, delete, download, import; and a model's
own page, where its prior is trained and new sounds are generated.

The library is the folder of `.distill` files; the store's `models` table follows
renames and deletions so runs keep pointing at their model.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from distill.core.core import DiskFull, RunError
from distill.core.owners import model_in_use
from distill.events import UNFINISHED_STATUSES
from distill.models import library
from distill.models.config import prior_size_for
from distill.models.history import generation_history, saved_edits
from distill.models.library import Listed, list_cards
from distill.models.model_file import ModelFileError
from distill.server.charts import Series, line_chart
from distill.server.files import FileRefused, library_file
from distill.server.files import generated_file as find_generated_file
from distill.server.inputs import (
    InputError,
    check_length,
    generate_options,
    limited,
    prior_options,
    safe_file_name,
)
from distill.server.packs import pack_choices
from distill.server.responses import (
    confined_file,
    library_model,
    path_for,
    render,
    run_error_status,
    see_other,
)
from distill.training.settings import MAX_GENERATION_CLIPS, PriorSettings
from distill.training.specs import GenerateRequest, PriorRequest


async def models_page(request: Request, error: str | None = None, status: int = 200) -> Response:
    home = request.app.state.settings.home
    cards = await asyncio.to_thread(lambda: [_entry(listed) for listed in list_cards(home)])
    context = {"models": cards, "error": error, "known_runs": await _known_runs(request, cards)}
    return render(request, "models.html", context, status)


async def _known_runs(request: Request, entries: list[dict[str, Any]]) -> set[str]:
    """The runs named by these cards that this server's store holds: a card links its run
    only then (a model imported from elsewhere names a run this server never had)."""
    named = set()
    for entry in entries:
        card = entry.get("card")
        if card is not None:
            named |= {card.run_id, card.prior.run_id if card.prior else None}
    return await request.app.state.core.store.known_runs(run_id for run_id in named if run_id)


async def model_page(request: Request, error: str | None = None, status: int = 200) -> Response:
    """One model: its card, its prior (train one, see its runs) and what it generated."""
    home = request.app.state.settings.home
    name, path = library_model(request)
    entry = await asyncio.to_thread(lambda: _entry(library.listed(path)))
    await request.app.state.core.settle()
    runs = await request.app.state.core.store.runs(model_name=name, run_type="prior", limit=20)
    context = {
        "m": entry,
        "edits": saved_edits(home, name),
        "pack_clips": await asyncio.to_thread(pack_choices, home, name),
        "prior_runs": runs,
        "known_runs": await _known_runs(request, [entry]),
        "prior_defaults": PriorSettings(),
        "max_generation_clips": MAX_GENERATION_CLIPS,
        **await _generations_context(request, name),
        "error": error,
        "form": getattr(request.state, "form_values", {}),
    }
    if "card" in entry:
        context["prior_size"] = prior_size_for(entry["card"].dataset.files)
    return render(request, "model.html", context, status)


def _entry(listed: Listed) -> dict[str, Any]:
    """A model's card and loss chart for a page; a file that cannot be read shows why."""
    entry: dict[str, Any] = {"name": listed.path.stem, "path": str(listed.path)}
    card = listed.card
    if card is None:
        return {**entry, "unreadable": listed.unreadable}
    curves = card.curves
    entry["card"] = card
    entry["listening"] = card.listening()
    entry["chart"] = line_chart(
        [
            Series("train loss", "train", curves.get("train_loss", [])),
            Series("validation loss", "val", curves.get("val_loss", [])),
            Series("commitment loss (validation)", "commit", curves.get("val_commit_loss", [])),
        ],
        width=480,
        height=180,
    )
    return entry


async def train_prior(request: Request) -> Response:
    """The train-prior form: checked, queued on the core, then off to the run's page."""
    name, _ = library_model(request)
    form = dict(await request.form())
    try:
        settings, overrides = prior_options(form)
        run_id = await request.app.state.core.submit(
            PriorRequest.run_type, PriorRequest(name, None, settings, overrides)
        )
    except (InputError, RunError, ModelFileError) as error:
        request.state.form_values = form
        status = error.status if isinstance(error, InputError) else 400
        status = run_error_status(error) if isinstance(error, RunError) else status
        return await model_page(request, str(error), status)
    return see_other(request, "run", run_id=run_id)


async def generate(request: Request) -> Response:
    """The generate form: a generate run on the core, then off to its page, which shows
    its clips as they are written; they join the model's history here."""
    home = request.app.state.settings.home
    name = request.path_params["name"]
    form = dict(await request.form())
    try:
        library_file(home, name)
    except FileRefused:
        raise HTTPException(404, f"no model named {name!r}") from None
    try:
        options = generate_options(form)
        run_id = await request.app.state.core.submit(
            GenerateRequest.run_type, GenerateRequest(model=name, **options)
        )
    except InputError as error:
        return await _generations(request, name, str(error), error.status)
    except RunError as error:  # no prior yet, a full disk
        status = 507 if isinstance(error, DiskFull) else 400
        return await _generations(request, name, str(error), status)
    except ModelFileError as error:
        return await _generations(request, name, str(error), 400)
    if request.headers.get("HX-Request") == "true":  # htmx would swap a redirect's page in
        return Response(
            status_code=204, headers={"HX-Redirect": path_for(request, "run", run_id=run_id)}
        )
    return see_other(request, "run", run_id=run_id)


async def _generations_context(request: Request, name: str) -> dict[str, Any]:
    """The model's history, and its generate runs not ended yet (each links its page)."""
    home = request.app.state.settings.home
    runs = await request.app.state.core.store.runs(model_name=name, run_type="generate", limit=50)
    return {
        "generations": await asyncio.to_thread(generation_history, name, home),
        "generating": [run for run in runs if run["status"] in UNFINISHED_STATUSES],
    }


async def _generations(
    request: Request, name: str, error: str | None = None, status: int = 200
) -> Response:
    context = {"name": name, **await _generations_context(request, name)}
    return render(request, "_generations.html", {**context, "generate_error": error}, status)


async def generated_file(request: Request) -> Response:
    """A generated clip or its matched training stretch; nothing else, nowhere else."""
    home, params = request.app.state.settings.home, request.path_params
    return confined_file(request, lambda: find_generated_file(home, params["name"], params["path"]))


async def download_model(request: Request) -> Response:
    _, path = library_model(request)
    return FileResponse(path, filename=path.name, media_type="application/octet-stream")


async def rename_model(request: Request) -> Response:
    home = request.app.state.settings.home
    name, _ = library_model(request)
    new_name = str((await request.form()).get("new_name", "")).strip()
    if (busy := await _in_use(request, name)) is not None:
        return await models_page(request, busy, 409)
    try:
        target = await asyncio.to_thread(library.rename_model, name, new_name, home)
    except ModelFileError as error:
        return await models_page(request, str(error), 400)
    await request.app.state.core.store.rename_model(name, target.stem, str(target))
    return see_other(request, "models")


async def delete_model(request: Request) -> Response:
    home = request.app.state.settings.home
    name, _ = library_model(request)
    if (busy := await _in_use(request, name)) is not None:
        return await models_page(request, busy, 409)
    try:
        await asyncio.to_thread(library.delete_model, name, home)
    except ModelFileError:
        raise HTTPException(404, f"no model named {name!r}") from None
    await request.app.state.core.store.forget_model(name)
    return see_other(request, "models")


async def _in_use(request: Request, name: str) -> str | None:
    """Why the model may not change now (a run uses it), or None."""
    core = request.app.state.core
    await core.settle()
    return await model_in_use(core.store, name)


async def import_model(request: Request) -> Response:
    """A `.distill` file from the browser: size-limited, then streamed through the
    library's import, which checks the whole file before it lands. Refusals name the
    file the user chose."""
    settings = request.app.state.settings
    try:
        check_length(request, settings.max_model_upload_bytes)
        counted = Request(request.scope, limited(request.receive, settings.max_model_upload_bytes))
        try:
            form = await counted.form(max_files=1, max_fields=5)
        except HTTPException as error:
            raise InputError(f"upload refused: {error.detail}") from None
        request.state.form = form  # closed below, with its spooled file
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InputError("choose a .distill file to import")
        given = upload.filename or "the uploaded file"
        stem = safe_file_name(upload.filename or "", "imported").removesuffix(".distill")
        name = str(form.get("name") or "").strip() or stem.replace(" ", "-")
        upload.file.seek(0, os.SEEK_END)
        size = upload.file.tell()
        upload.file.seek(0)
        try:
            await asyncio.to_thread(library.import_stream, upload.file, size, name,
                                    settings.home, settings.max_model_upload_bytes)  # fmt: skip
        except ModelFileError as error:
            raise InputError(f"{given} not imported: {error}") from None
    except InputError as error:
        return await models_page(request, str(error), error.status)
    finally:
        if getattr(request.state, "form", None) is not None:
            await request.state.form.close()
    return see_other(request, "models")
