"""The two ways a route answers besides JSON: a rendered template, or a confined user file.

Both route modules (pages.py, library.py) answer this way; neither borrows from the other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from distill.server.files import FileRefused


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context, status_code=status)


def confined_file(request: Request, find: Callable[[], Path]) -> Response:
    """The file `find` names, or 404 for any path it refuses (files.py) and for encoded
    slashes, backslashes and NULs, which a router would otherwise decode into a path."""
    raw = request.scope.get("raw_path", b"").lower()
    if b"%2f" in raw or b"%5c" in raw or b"%00" in raw:
        raise HTTPException(404, "no such file")
    try:
        path = find()
    except FileRefused:
        raise HTTPException(404, "no such file") from None
    return FileResponse(path)
