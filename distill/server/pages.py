"""The HTML pages and the forms they post: the dashboard, new run, run, runs list.

Handlers are thin: read the request, call the core or a view, render a template. Bad
input comes back as the same page with the reason shown (InputError), never a traceback.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from distill.constants import SET_TIERS
from distill.core.core import RunError
from distill.core.store import UnknownStatus, check_status
from distill.events import RUN_STATUSES
from distill.models.config import (
    CODEBOOK_SIZES,
    MAX_COMMITMENT_WEIGHT,
    MAX_RVQ_LEVELS,
    MIN_RVQ_LEVELS,
    VQVAEConfig,
)
from distill.paths import mel_cache_dir
from distill.server import helper
from distill.server.files import run_file as find_run_file
from distill.server.inputs import (
    MAX_PAGE,
    BodyTooLarge,
    InputError,
    check_length,
    confine_dataset,
    forget_upload,
    limited,
    save_uploads,
    train_options,
    whole_number,
)
from distill.server.responses import (
    confined_file,
    render,
    route_path,
    run_error_status,
    see_other,
)
from distill.server.views import cluster_context, dashboard_context, run_context, runs_context
from distill.training.bounds import MAX_PATIENCE, MAX_STAGE_STEPS
from distill.training.settings import TrainSettings
from distill.training.specs import TrainRequest


async def dashboard(request: Request) -> Response:
    await request.app.state.core.settle()
    store = request.app.state.core.store
    context = await dashboard_context(store)
    context["models"] = (await store.models())[:10]
    context.update(cluster_context(request.app.state.core))
    return render(request, "dashboard.html", context)


async def cluster_panel(request: Request) -> Response:
    """The dashboard's cluster panel alone: the page polls it while it is open."""
    return render(request, "_cluster.html", cluster_context(request.app.state.core))


def _new_run_context(**extra: Any) -> dict[str, Any]:
    return {
        "min_levels": MIN_RVQ_LEVELS,
        "max_levels": MAX_RVQ_LEVELS,
        "rvq_levels": VQVAEConfig.rvq_levels,
        "commitment_weight": VQVAEConfig.commitment_weight,
        "max_commitment_weight": MAX_COMMITMENT_WEIGHT,
        "epochs": TrainSettings.epochs,
        "stage_steps": TrainSettings.stage_steps,
        "patience": TrainSettings.patience,
        "max_patience": MAX_PATIENCE,
        "max_stage_steps": MAX_STAGE_STEPS,
        "sizes": [(most, CODEBOOK_SIZES[tier]) for tier, most in enumerate(SET_TIERS)],
        **extra,
    }


async def new_run(request: Request) -> Response:
    return render(request, "new.html", _new_run_context())


async def scan_folder(request: Request) -> Response:
    """The folder-path form: scan it in the helper process and show what training would see."""
    form = await request.form()
    try:
        folder = confine_dataset(str(form.get("dataset", "")), request.app.state.settings)
    except InputError as error:
        return render(request, "_scan.html", {"error": str(error)}, error.status)
    return await _scan(request, str(folder))


async def upload_sounds(request: Request) -> Response:
    """Dropped or chosen files: size and count limits first, then saved and scanned."""
    settings = request.app.state.settings
    try:
        check_length(request, settings.max_upload_bytes)
        counted = Request(request.scope, limited(request.receive, settings.max_upload_bytes))
        try:
            form = await counted.form(max_files=settings.max_upload_files, max_fields=20)
        except HTTPException as error:  # python-multipart's limits, e.g. too many files
            raise InputError(f"upload refused: {error.detail}") from None
        try:
            files = [f for f in form.getlist("files") if not isinstance(f, str)]
            folder = await save_uploads(files, settings)
        finally:
            await form.close()
    except InputError as error:
        return render(request, "_scan.html", {"error": str(error)}, error.status)
    response = await _scan(request, str(folder))
    if response.status_code != 200:
        forget_upload(settings, folder)  # nothing usable in it: not kept for good
    return response


async def _scan(request: Request, folder: str) -> Response:
    home = request.app.state.settings.home
    result = await request.app.state.helper.call(
        helper.scan_folder, folder, str(mel_cache_dir(home)), {}
    )
    if "error" in result:
        return render(request, "_scan.html", {"error": result["error"], "dataset": folder}, 400)
    return render(request, "_scan.html", {"scan": result["scan"], "dataset": folder})


async def start_run(request: Request) -> Response:
    """The new-run form: checked, submitted to the core, then off to the run's page."""
    form = dict(await request.form())
    try:
        folder = confine_dataset(str(form.get("dataset", "")), request.app.state.settings)
        settings, overrides, name = train_options(form)
        run_id = await request.app.state.core.submit(
            TrainRequest.run_type, TrainRequest(str(folder), name, settings, overrides)
        )
    except (InputError, RunError) as error:
        status = error.status if isinstance(error, InputError) else run_error_status(error)
        return render(request, "new.html", _new_run_context(error=str(error), form=form), status)
    return see_other(request, "run", run_id=run_id)


async def run_page(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    await request.app.state.core.settle()
    context = await run_context(request.app.state.core.store, run_id)
    if context is None:
        raise HTTPException(404, f"no run {run_id!r}")
    context["last_seq"] = context["run"]["last_seq"]
    return render(request, "run.html", context)


async def cancel_run(request: Request) -> Response:
    """Cancel; `?keep_best=1` (the "stop and keep the best epoch" button) saves the best
    epoch so far as the run's model."""
    keep_best = request.query_params.get("keep_best") == "1"
    return await _act(request, lambda run_id: request.app.state.core.cancel(run_id, keep_best))


async def resume_run(request: Request) -> Response:
    return await _act(request, request.app.state.core.resume)


async def _act(request: Request, action) -> Response:
    run_id = request.path_params["run_id"]
    try:
        await action(run_id)
    except RunError as error:
        raise HTTPException(409, str(error)) from None
    return see_other(request, "run", run_id=run_id)


async def run_file(request: Request) -> Response:
    """A preview WAV or PNG from the run's folder; nothing else, nowhere else."""
    home, params = request.app.state.settings.home, request.path_params
    return confined_file(request, lambda: find_run_file(home, params["run_id"], params["path"]))


async def runs_list(request: Request) -> Response:
    params = request.query_params
    status = params.get("status") or None
    try:
        if status is not None:
            check_status(status)
        page = whole_number(params.get("page", "1"), "page", 1, MAX_PAGE)
    except (UnknownStatus, InputError) as error:
        raise HTTPException(400, str(error)) from None
    await request.app.state.core.settle()
    context = await runs_context(
        request.app.state.core.store,
        status,
        params.get("dataset") or None,
        params.getlist("compare"),
        page,
    )
    context["statuses"] = RUN_STATUSES
    return render(request, "runs.html", context)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if route_path(request).startswith("/api/"):
        from starlette.responses import JSONResponse

        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    try:
        return render(request, "error.html", {"status": exc.status_code, "message": exc.detail},
                      exc.status_code)  # fmt: skip
    except Exception:  # noqa: BLE001 - the error page must not fail in turn
        return HTMLResponse(str(exc.detail), status_code=exc.status_code)


async def body_too_large(request: Request, exc: Exception) -> Response:
    """A body past the guard's cap, found as it streamed into a form: a 413 page."""
    return await http_error(request, HTTPException(413, str(exc)))


EXCEPTION_HANDLERS = {HTTPException: http_error, BodyTooLarge: body_too_large}
