"""The model library page: each model's card, rename, delete, download, import.

The library is the folder of `.distill` files; the store's `models` table follows
renames and deletions so runs keep pointing at their model.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from distill.models import library
from distill.models.library import list_models, read_card
from distill.models.model_file import ModelFileError
from distill.paths import models_dir
from distill.server.charts import Series, line_chart
from distill.server.files import FileRefused, library_file
from distill.server.inputs import InputError, check_length, limited, safe_file_name
from distill.server.pages import render


async def models_page(request: Request, error: str | None = None, status: int = 200) -> Response:
    home = request.app.state.settings.home
    cards = await asyncio.to_thread(_cards, home)
    return render(request, "models.html", {"models": cards, "error": error}, status)


def _cards(home: Path) -> list[dict[str, Any]]:
    models = []
    for path in list_models(home):
        entry: dict[str, Any] = {"name": path.stem, "path": str(path), "size": path.stat().st_size}
        try:
            card = read_card(path)
        except (ModelFileError, OSError) as error:
            entry["error"] = str(error)
        else:
            curves = card.get("curves", {})
            entry["card"] = card
            entry["chart"] = line_chart(
                [
                    Series("train loss", "train", curves.get("train_loss", [])),
                    Series("validation loss", "val", curves.get("val_loss", [])),
                    Series(
                        "commitment loss (validation)", "commit", curves.get("val_commit_loss", [])
                    ),
                ],
                width=480,
                height=180,
            )
        models.append(entry)
    return models


async def download_model(request: Request) -> Response:
    try:
        path = library_file(request.app.state.settings.home, request.path_params["name"])
    except FileRefused:
        raise HTTPException(404, "no such model") from None
    return FileResponse(path, filename=path.name, media_type="application/octet-stream")


async def rename_model(request: Request) -> Response:
    home = request.app.state.settings.home
    name = request.path_params["name"]
    new_name = str((await request.form()).get("new_name", "")).strip()
    try:
        library_file(home, name)
    except FileRefused:
        raise HTTPException(404, "no such model") from None
    try:
        target = await asyncio.to_thread(library.rename_model, name, new_name, home)
    except ModelFileError as error:
        return await models_page(request, str(error), 400)
    await request.app.state.core.store.rename_model(name, target.stem, str(target))
    return RedirectResponse(request.url_for("models"), status_code=303)


async def delete_model(request: Request) -> Response:
    home = request.app.state.settings.home
    name = request.path_params["name"]
    try:
        library_file(home, name)
        await asyncio.to_thread(library.delete_model, name, home)
    except (FileRefused, ModelFileError):
        raise HTTPException(404, "no such model") from None
    await request.app.state.core.store.forget_model(name)
    return RedirectResponse(request.url_for("models"), status_code=303)


async def import_model(request: Request) -> Response:
    """A `.distill` file from the browser: size-limited, then through the library's import,
    which checks the whole file before it lands."""
    settings = request.app.state.settings
    folder = models_dir(settings.home)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".import-{secrets.token_hex(6)}.tmp"
    try:
        check_length(request, settings.max_model_upload_bytes)
        counted = Request(request.scope, limited(request.receive, settings.max_model_upload_bytes))
        try:
            form = await counted.form(max_files=1, max_fields=5)
        except HTTPException as error:
            raise InputError(f"upload refused: {error.detail}") from None
        request.state.form = form  # closed below, with the temporary file
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InputError("choose a .distill file to import")
        wanted = str(form.get("name") or "").strip()
        stem = safe_file_name(upload.filename or "", "imported").removesuffix(".distill")
        with open(temporary, "xb") as out:
            while chunk := await upload.read(1 << 20):
                out.write(chunk)
        name = wanted or stem.replace(" ", "-")
        try:
            await asyncio.to_thread(library.import_model, temporary, name, settings.home)
        except ModelFileError as error:
            raise InputError(f"not imported: {error}") from None
    except InputError as error:
        return await models_page(request, str(error), error.status)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        if getattr(request.state, "form", None) is not None:
            await request.state.form.close()
    return RedirectResponse(request.url_for("models"), status_code=303)
