"""How a route answers besides JSON: a rendered template, a confined user file, a redirect.

Both route modules (pages.py, library.py) answer this way; neither borrows from the other.
Every link and redirect the server writes is a path, never `http://host:port/...` built
from the Host header (Starlette's `url_for`): behind an HTTPS reverse proxy an absolute
http:// URL is mixed content, and the browser drops the page's styles and scripts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, RedirectResponse, Response

from distill.core.core import DiskFull, RunError
from distill.server.files import FileRefused, library_file


def path_for(request: HTTPConnection, name: str, /, **params: Any) -> str:
    """The path of the route called `name` (under the app's root path), for links.

    Parameters are percent-encoded ("/" kept, for `{path:path}` routes): a saved edit's
    name may hold a space, and the router decodes what the browser sends back.
    """
    quoted = {key: quote(str(value), safe="/") for key, value in params.items()}
    return request.url_for(name, **quoted).path


def route_path(request: HTTPConnection) -> str:
    """The request's path below the app's root path: what the routes match."""
    path, root = request.url.path, request.scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def see_other(request: Request, name: str, /, **params: Any) -> Response:
    """After a form's POST: 303 to the route called `name`, by path."""
    return RedirectResponse(path_for(request, name, **params), status_code=303)


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


def library_model(request: Request) -> tuple[str, Path]:
    """The model the route names ("name"): its name and its file in the library, or 404."""
    name = request.path_params["name"]
    try:
        return name, library_file(request.app.state.settings.home, name)
    except FileRefused:
        raise HTTPException(404, f"no model named {name!r}") from None


def run_error_status(error: RunError) -> int:
    """507 when the disk is full (the server's to fix), 409 for a refusal (a taken name)."""
    return 507 if isinstance(error, DiskFull) else 409
