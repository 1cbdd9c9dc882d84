"""The Starlette app: one core per server, routes in one list, the guard in front.

`create_app(settings)` is all a caller needs: the lifespan starts the core (store, bus,
runner) on the server's own loop and stops it on the way out, so running jobs
checkpoint and every event is flushed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

import distill
from distill.constants import ERROR_REDUCTION_UNIT, LOW_UTILIZATION, MIN_VECTORS_PER_CODE
from distill.core.core import Core
from distill.events import TRAIN_SPLIT, UNFINISHED_STATUSES, VAL_SPLIT
from distill.models.copy_check import nothing_shared, run_means_something
from distill.progress import duration
from distill.server import api, editor, library, packs, pages
from distill.server.discovery import remove_server_file
from distill.server.editor_lane import EditorLane
from distill.server.helper import Helper
from distill.server.live import Streams
from distill.server.responses import path_for
from distill.server.security import Guard
from distill.server.settings import ServerSettings
from distill.server.views import short_path
from distill.threads import torch_processes
from distill.training.jobs import RUN_TYPES

WEB_DIR = Path(distill.__file__).parent / "web"  # a link to ../web in a checkout


def templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(WEB_DIR / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=_pct, num=_num, when=_when, short_path=short_path, duration=duration)
    env.globals["low_utilization"] = LOW_UTILIZATION
    env.globals["min_vectors_per_code"] = MIN_VECTORS_PER_CODE
    env.globals["error_reduction_unit"] = ERROR_REDUCTION_UNIT
    env.globals["train_split"], env.globals["val_split"] = TRAIN_SPLIT, VAL_SPLIT
    env.globals["unfinished_statuses"] = UNFINISHED_STATUSES
    env.globals["run_means_something"] = run_means_something  # the copy check's words
    env.globals["nothing_shared"] = nothing_shared
    env.globals["url_for"] = _url_for  # Jinja2Templates keeps ours: it only sets a default
    return Jinja2Templates(env=env)


def create_app(settings: ServerSettings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        core = Core(
            settings.home,
            settings.concurrency,
            run_types=RUN_TYPES,
            cluster=settings.cluster,
        )
        await core.start()
        app.state.core = core
        processes = torch_processes(settings.concurrency)
        app.state.helper = Helper(processes)  # dataset scans
        app.state.editor_helper = EditorLane(Helper(processes))  # never behind those
        app.state.streams = Streams(core, lambda name, ctx: tpl.get_template(name).render(ctx))
        try:
            yield
        finally:
            # Here, not after uvicorn returns: on SIGTERM uvicorn re-raises the signal
            # once shut down, and the process ends before any later cleanup.
            remove_server_file(settings.home, os.getpid())
            await app.state.helper.close()
            await app.state.editor_helper.close()
            await core.stop()

    tpl = templates()
    routes = [
        Route("/", pages.dashboard, name="dashboard"),
        Route("/cluster", pages.cluster_panel, name="cluster"),
        Route("/new", pages.new_run, name="new_run"),
        Route("/new/scan", pages.scan_folder, methods=["POST"], name="scan_folder"),
        Route("/new/upload", pages.upload_sounds, methods=["POST"], name="upload_sounds"),
        Route("/runs", pages.runs_list, name="runs"),
        Route("/runs", pages.start_run, methods=["POST"], name="start_run"),
        Route("/runs/{run_id}", pages.run_page, name="run"),
        Route("/runs/{run_id}/cancel", pages.cancel_run, methods=["POST"], name="cancel_run"),
        Route("/runs/{run_id}/resume", pages.resume_run, methods=["POST"], name="resume_run"),
        Route("/runs/{run_id}/files/{path:path}", pages.run_file, name="run_file"),
        Route("/models", library.models_page, name="models"),
        Route("/models/import", library.import_model, methods=["POST"], name="import_model"),
        Route("/models/{name}", library.model_page, name="model"),
        Route("/models/{name}/prior", library.train_prior, methods=["POST"], name="train_prior"),
        Route("/models/{name}/generate", library.generate, methods=["POST"], name="generate"),
        Route("/models/{name}/generated/{path:path}", library.generated_file, name="generated"),
        Route("/models/{name}/edit", editor.edit_page, name="edit"),
        Route("/models/{name}/edit/decode", editor.decode, methods=["POST"], name="edit_decode"),
        Route(
            "/models/{name}/edit/regenerate",
            editor.regenerate,
            methods=["POST"],
            name="edit_regenerate",
        ),
        Route("/models/{name}/edit/save", editor.save, methods=["POST"], name="edit_save"),
        Route("/models/{name}/edit/mel", editor.mel, methods=["POST"], name="edit_mel"),
        Route("/models/{name}/edit/upload", editor.upload, methods=["POST"], name="edit_upload"),
        Route("/models/{name}/pack", packs.download_pack, methods=["POST"], name="pack"),
        Route("/models/{name}/download", library.download_model, name="download_model"),
        Route("/models/{name}/rename", library.rename_model, methods=["POST"], name="rename_model"),
        Route("/models/{name}/delete", library.delete_model, methods=["POST"], name="delete_model"),
        Route("/api/health", api.health),
        Route("/api/runs", api.list_runs),
        Route("/api/runs", api.submit_run, methods=["POST"]),
        Route("/api/priors", api.submit_prior, methods=["POST"]),
        Route("/api/generations", api.submit_generate, methods=["POST"]),
        Route("/api/runs/{run_id}", api.get_run),
        Route("/api/runs/{run_id}/cancel", api.cancel_run, methods=["POST"]),
        Route("/api/runs/{run_id}/resume", api.resume_run, methods=["POST"]),
        WebSocketRoute("/ws/dashboard", api.dashboard_stream, name="dashboard_stream"),
        WebSocketRoute("/ws/runs/{run_id}", api.run_page_stream, name="run_stream"),
        WebSocketRoute("/ws/runs/{run_id}/events", api.run_event_stream, name="run_events"),
        Mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, settings=settings)],
        lifespan=lifespan,
        exception_handlers=pages.EXCEPTION_HANDLERS,
    )
    app.state.settings = settings
    app.state.templates = tpl
    return app


@pass_context
def _url_for(context: dict[str, Any], name: str, /, **params: Any) -> str:
    """Templates link by path (responses.path_for), not by Starlette's absolute URL."""
    return path_for(context["request"], name, **params)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "-"
