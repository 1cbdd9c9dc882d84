"""The JSON API and the WebSocket endpoints: what `distill` in a terminal talks to.

JSON in, JSON out, errors as {"error": "..."} with a 4xx status. The CLI submits a run
of any type with POST /api/runs (its body's "run_type": "vqvae", the default, "prior" or
"generate"; POST /api/priors and /api/generations name theirs in the path) and follows it
on /ws/runs/{id}/events.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from distill.core.core import RunError
from distill.core.store import UnknownStatus
from distill.models.model_file import ModelFileError
from distill.server.inputs import (
    MAX_SEQ,
    InputError,
    api_request,
    confine_dataset,
    generate_api_request,
    library_model_name,
    prior_api_request,
    read_json_body,
    whole_number,
)
from distill.server.live import serve_client
from distill.server.responses import run_error_status
from distill.training.specs import GenerateRequest, PriorRequest, TrainRequest


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True, "pid": os.getpid()})


async def list_runs(request: Request) -> Response:
    params, core = request.query_params, request.app.state.core
    await core.settle()
    try:
        runs = await core.store.runs(
            status=params.get("status") or None, dataset=params.get("dataset") or None
        )
    except UnknownStatus as error:
        return _error(str(error), 400)
    return JSONResponse([_public(r) for r in runs])


async def get_run(request: Request) -> Response:
    await request.app.state.core.settle()
    store = request.app.state.core.store
    run_id = request.path_params["run_id"]
    run = await store.run(run_id)
    if run is None:
        return _error(f"no run {run_id!r}", 404)
    return JSONResponse({**_public(run), "epoch_metrics": await store.epoch_metrics(run_id)})


async def submit_run(request: Request) -> Response:
    """Any run type, by the body's "run_type" (a VQ-VAE when it has none)."""
    return await _submit(request, None)


async def submit_prior(request: Request) -> Response:
    return await _submit(request, "prior")


async def submit_generate(request: Request) -> Response:
    return await _submit(request, "generate")


async def _submit(request: Request, run_type: str | None) -> Response:
    """The body read (capped as it streams), then handed to its run type's submission:
    `run_type`, or the body's own "run_type" when the route names none."""
    try:
        body = await read_json_body(request)
    except InputError as error:
        return _error(str(error), error.status)
    if run_type is None:
        run_type = body.pop("run_type", "vqvae") if isinstance(body, dict) else "vqvae"
    submit = {"vqvae": _submit_vqvae, "prior": _submit_prior, "generate": _submit_generate}
    if run_type not in submit:
        return _error(f"run_type must be one of {', '.join(submit)}, not {run_type!r}", 400)
    return await submit[run_type](request, body)


async def _submit_vqvae(request: Request, body: Any) -> Response:
    try:
        body = api_request(body)
        folder = confine_dataset(str(body.get("dataset", "")), request.app.state.settings)
        train = TrainRequest(
            str(folder),
            body.get("model_name"),
            body.get("settings", {}),
            body.get("overrides", {}),
            body.get("mel", {}),
        )
        run_id = await request.app.state.core.submit(TrainRequest.run_type, train)
    except InputError as error:
        return _error(str(error), error.status)
    except RunError as error:
        return _error(str(error), run_error_status(error))
    return JSONResponse({"run_id": run_id}, status_code=201)


async def _submit_prior(request: Request, body: Any) -> Response:
    """A prior run on a library model (by name: a server changes no file outside its
    library), on the model's own dataset unless one is given."""
    settings = request.app.state.settings
    try:
        body = prior_api_request(body)
        dataset = body.get("dataset")
        if dataset is not None:
            dataset = str(confine_dataset(str(dataset), settings))
        model = library_model_name(str(body.get("model", "")), settings.home)
        prior = PriorRequest(model, dataset, body.get("settings", {}), body.get("overrides", {}))
        run_id = await request.app.state.core.submit(PriorRequest.run_type, prior)
    except InputError as error:
        return _error(str(error), error.status)
    except RunError as error:
        return _error(str(error), run_error_status(error))
    except ModelFileError as error:
        return _error(str(error), 409)
    return JSONResponse({"run_id": run_id}, status_code=201)


async def _submit_generate(request: Request, body: Any) -> Response:
    """New sounds from a library model's prior, into its history."""
    try:
        body = generate_api_request(body)
        model = library_model_name(str(body.pop("model", "")), request.app.state.settings.home)
        generate = GenerateRequest(model=model, **body)
        run_id = await request.app.state.core.submit(GenerateRequest.run_type, generate)
    except InputError as error:
        return _error(str(error), error.status)
    except RunError as error:
        return _error(str(error), run_error_status(error))
    except ModelFileError as error:
        return _error(str(error), 409)
    except ValueError as error:  # the options do not fit together
        return _error(str(error), 400)
    return JSONResponse({"run_id": run_id}, status_code=201)


async def cancel_run(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    keep_best = request.query_params.get("keep_best") == "1"  # save the best epoch so far
    try:
        await request.app.state.core.cancel(run_id, keep_best)
    except RunError as error:
        return _error(str(error), 409)
    return JSONResponse({"run_id": run_id}, status_code=202)


async def resume_run(request: Request) -> Response:
    """Resume; `after_seq` is where the resumed attempt's events begin, for following."""
    core = request.app.state.core
    run_id = request.path_params["run_id"]
    try:
        after = await core.store.last_seq(run_id)
        await core.resume(run_id)
    except RunError as error:
        return _error(str(error), 409)
    return JSONResponse({"run_id": run_id, "after_seq": after}, status_code=202)


async def dashboard_stream(ws: WebSocket) -> None:
    streams = ws.app.state.streams
    await serve_client(ws, _limit(ws), streams.stats, streams.dashboard)


async def run_page_stream(ws: WebSocket) -> None:
    streams, run_id = ws.app.state.streams, ws.path_params["run_id"]
    await serve_client(
        ws, _limit(ws), streams.stats, lambda client: streams.run_page(client, run_id, _after(ws))
    )


async def run_event_stream(ws: WebSocket) -> None:
    streams, run_id = ws.app.state.streams, ws.path_params["run_id"]
    await serve_client(
        ws, _limit(ws), streams.stats, lambda client: streams.run_events(client, run_id, _after(ws))
    )


def _after(ws: WebSocket) -> int:
    """The last seq the client has. Read inside the stream (serve_client), so that a bad
    one closes the socket with 1008 and the reason, after the handshake."""
    return whole_number(ws.query_params.get("after", "0"), "after (the last seq seen)", 0, MAX_SEQ)


def _limit(ws: WebSocket) -> int:
    return ws.app.state.settings.ws_max_message_bytes


def _public(run: dict) -> dict:
    return {k: v for k, v in run.items() if k != "spec"}


def _error(message: str, status: int) -> Response:
    return JSONResponse({"error": message}, status_code=status)
