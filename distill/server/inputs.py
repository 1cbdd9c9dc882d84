"""What the server accepts from a user: dataset folders, uploads, training options.

Every check here turns bad input into an `InputError` with a message a person can act on;
nothing from a request reaches the file system or the core unchecked.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from distill.audio.mel_config import MelConfig
from distill.files import parse_json
from distill.models.config import PriorConfig, VQVAEConfig
from distill.paths import check_model_name, models_dir
from distill.server.settings import ServerSettings
from distill.training.bounds import (
    MAX_CLIPS,
    MAX_SEED,
    MAX_TEMPERATURE,
    MEL_BOUNDS,
    MODEL_BOUNDS,
    PRIOR_BOUNDS,
    PRIOR_SIZE_BOUNDS,
    SAMPLING_BOUNDS,
    TRAIN_BOUNDS,
    BoundsError,
    check_section,
)
from distill.training.settings import MAX_GENERATION_CLIPS, PriorSettings, TrainSettings
from distill.training.specs import GenerateRequest

MAX_PAGE_SECONDS = 60.0  # a generate request from a page: seconds per clip
# The largest whole number a request may carry anywhere: JSON's exact integers, well
# inside SQLite's 64-bit ones (a bigger one overflowed into a 500 or a 1011 close).
MAX_REQUEST_INT = 2**53
MAX_SEQ = MAX_REQUEST_INT  # a WebSocket's `after`
MAX_PAGE = 10**9  # the runs list's `page`
MAX_JSON_BODY_BYTES = 1024**2  # a JSON API request (a run's options): far more than needed
MAX_BODY_BYTES = 4 * 1024**2  # any body but an upload's: the editor's grid is the largest
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")
MAX_FILE_NAME = 120  # characters of an uploaded file's name that are kept
MAX_EXTENSION = 16  # a longer "extension" is part of the name
TRAIN_SETTINGS_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainSettings))
MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(VQVAEConfig)) - {"mel"}
PRIOR_SETTINGS_FIELDS = frozenset(f.name for f in dataclasses.fields(PriorSettings))
PRIOR_SIZE_FIELDS = frozenset(f.name for f in dataclasses.fields(PriorConfig)) - {
    "rvq_levels",
    "codebook_size",
}
MEL_FIELDS = frozenset(f.name for f in dataclasses.fields(MelConfig))


class InputError(ValueError):
    """A request the server refuses, with the reason to show the user."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class BodyTooLarge(InputError):
    """The request body is over the upload limit."""


def confine_dataset(raw: str, settings: ServerSettings) -> Path:
    """A folder path from a user: resolved (symlinks too) and inside an allowed root."""
    text = (raw or "").strip()
    if not text:
        raise InputError("give the path of a folder of sounds on this machine")
    if "\x00" in text:
        raise InputError("that path has a NUL character in it")
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise InputError(f"{text!r} is not an absolute path: start it with / or ~")
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in settings.allowed_roots):
        roots = ", ".join(str(r) for r in settings.allowed_roots)
        raise InputError(
            f"{resolved} is outside the folders this server may read ({roots}); to allow"
            f" it, add it to DISTILL_ALLOWED_ROOTS (`make run ROOTS={resolved}` does) and"
            f" restart the server, or restart the server as `distill serve --allow-root {resolved}`",
            status=403,
        )
    if not resolved.is_dir():
        raise InputError(f"{resolved} is not a folder")
    return resolved


def limited(receive: Receive, max_bytes: int) -> Receive:
    """`receive` that raises BodyTooLarge once the body passes `max_bytes`."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise BodyTooLarge(too_large(max_bytes), status=413)
        return message

    return wrapped


async def read_json_body(request: Request, max_bytes: int = MAX_JSON_BODY_BYTES) -> Any:
    """A JSON request's body, read only up to `max_bytes` (BodyTooLarge, 413, at the
    Content-Length or as soon as the stream passes it: a 300 MiB body is never held) and
    parsed as untrusted: too deep a nesting or a number out of bounds is an InputError."""
    check_length(request, max_bytes)
    chunks, seen = [], 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > max_bytes:
            raise BodyTooLarge(too_large(max_bytes, "request body"), status=413)
        chunks.append(chunk)
    try:
        return bounded_json(parse_json(b"".join(chunks)))
    except ValueError as error:
        raise InputError(f"the body is not valid JSON: {error}") from None


def check_length(request: Request, max_bytes: int) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise BodyTooLarge(too_large(max_bytes), status=413)


def too_large(max_bytes: int, what: str = "upload") -> str:
    return f"the {what} is larger than this server accepts ({max_bytes / 1024**2:g} MiB at most)"


async def save_uploads(files: list[UploadFile], settings: ServerSettings) -> Path:
    """Write uploaded sounds into a new folder under the data directory; names made safe."""
    if not files:
        raise InputError("choose at least one sound file to upload")
    if len(files) > settings.max_upload_files:
        raise InputError(f"too many files: {settings.max_upload_files} at most per upload")
    folder = settings.uploads_dir / secrets.token_hex(6)
    folder.mkdir(parents=True)
    used: set[str] = set()
    for index, upload in enumerate(files):
        name = safe_file_name(upload.filename or "", f"sound-{index + 1}")
        while name.lower() in used:
            name = f"{index + 1}-{name}"
        used.add(name.lower())
        with open(folder / name, "xb") as out:
            while chunk := await upload.read(1 << 20):
                out.write(chunk)
    return folder


def forget_upload(settings: ServerSettings, inside: Path) -> None:
    """Remove the upload folder that holds `inside` (a refused upload, or a file of one):
    refused uploads stayed in uploads/ for good. Nothing outside uploads/ is touched."""
    root = settings.uploads_dir.resolve()
    path = inside.resolve()
    if path.is_relative_to(root) and path != root:
        shutil.rmtree(root / path.relative_to(root).parts[0], ignore_errors=True)


def safe_file_name(name: str, fallback: str) -> str:
    """The last part of a client's file name, with only plain characters, never hidden.

    A name past MAX_FILE_NAME is shortened before its extension, which it keeps: a scan
    goes by the extension, and a cut-off one made the sound a skipped file.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _SAFE_NAME.sub("_", base).strip(" .")
    if len(base) > MAX_FILE_NAME:
        stem, dot, extension = base.rpartition(".")
        if stem and len(extension) <= MAX_EXTENSION:
            base = stem[: MAX_FILE_NAME - len(extension) - 1].rstrip(" .") + dot + extension
        else:
            base = base[:MAX_FILE_NAME].rstrip(" .")
    return base or fallback


def train_options(form: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(settings, overrides, model name) from the new-run form's fields, checked against
    the bounds the API and the CLI apply (training/bounds.py)."""
    levels = _whole(form, "rvq_levels", "RVQ levels", VQVAEConfig.rvq_levels, MODEL_BOUNDS)
    epochs = _whole(form, "epochs", "epochs", TrainSettings.epochs, TRAIN_BOUNDS)
    weight = _number(form, "commitment_weight", "the commitment weight",
                     VQVAEConfig.commitment_weight, MODEL_BOUNDS)  # fmt: skip
    stage_steps = _whole(form, "stage_steps", "decoder stage steps", TrainSettings.stage_steps,
                         TRAIN_BOUNDS)  # fmt: skip
    patience = _whole(form, "patience", "patience", TrainSettings.patience, TRAIN_BOUNDS)
    name = (form.get("model_name") or "").strip() or None
    return (
        {"epochs": epochs, "stage_steps": stage_steps, "patience": patience},
        {"rvq_levels": levels, "commitment_weight": weight},
        _model_name(name),
    )


def prior_options(form: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, overrides) from the train-prior form; an empty size field means auto."""
    epochs = _whole(form, "epochs", "epochs", PriorSettings.epochs, PRIOR_BOUNDS)
    learning_rate = _number(form, "learning_rate", "the learning rate",
                            PriorSettings.learning_rate, PRIOR_BOUNDS)  # fmt: skip
    overrides = {}
    for field, what in (("hidden_size", "hidden size"), ("layers", "layers"), ("heads", "heads")):
        raw = str(form.get(field) or "").strip()
        overrides[field] = _whole(form, field, what, None, PRIOR_SIZE_BOUNDS) if raw else None
    hidden, heads = overrides["hidden_size"], overrides["heads"]
    if hidden is not None and heads is not None and hidden % heads:
        raise InputError(f"heads ({heads}) must divide the hidden size ({hidden})")
    clips = whole_number(form.get("generation_clips", PriorSettings.generation_clips),
                         "clips to measure", 1, MAX_GENERATION_CLIPS)  # fmt: skip
    patience = _whole(form, "patience", "patience", PriorSettings.patience, PRIOR_BOUNDS)
    settings = {"epochs": epochs, "learning_rate": learning_rate, "generation_clips": clips}
    return settings | {"patience": patience}, overrides


def _whole(form: dict[str, Any], field: str, what: str, default: Any, bounds: dict) -> int:
    bound = bounds[field]
    return whole_number(form.get(field, default), what, int(bound.low), int(bound.high))


def _number(form: dict[str, Any], field: str, what: str, default: Any, bounds: dict) -> float:
    bound = bounds[field]
    return _float(form.get(field, default), what, bound.low, bound.high)


def generate_options(form: dict[str, Any]) -> dict[str, Any]:
    """GenerateSpec fields from the generate form, within what a page should wait for."""
    options: dict[str, Any] = {
        "seconds": _float(form.get("seconds", 4.0), "seconds", 0.1, MAX_PAGE_SECONDS),
        "count": whole_number(form.get("count", 1), "count", 1, MAX_CLIPS),
        "temperature": _float(
            form.get("temperature", 1.0), "the temperature", 0.0, MAX_TEMPERATURE
        ),
        "top_k": whole_number(form.get("top_k", 0), "top-k", 0, 1_000_000),
        "top_p": _float(form.get("top_p", 1.0), "top-p", 0.0, 1.0),
        "seed": whole_number(form.get("seed", 0), "the seed", 0, MAX_SEED),
    }
    if options["top_p"] == 0.0:
        raise InputError("top-p must be above 0 (1 = off)")
    mode = form.get("mode", "auto")
    if mode not in GENERATE_MODES:
        raise InputError(f"mode must be one of {', '.join(GENERATE_MODES)}, not {mode!r}")
    options["one_shot"] = GENERATE_MODES[mode]
    return options


# The generate form's mode -> GenerateSpec.one_shot (auto: the prior's default).
GENERATE_MODES: dict[str, bool | None] = {"auto": None, "one-shot": True, "continuous": False}


def api_request(body: Any) -> dict[str, Any]:
    """A JSON TrainRequest from the API: known fields only, so a typo is an error here,
    each within the bounds the form and the CLI apply (training/bounds.py)."""
    if not isinstance(body, dict):
        raise InputError('send a JSON object: {"dataset": "/path/to/sounds", ...}')
    unknown = set(body) - {"dataset", "model_name", "settings", "overrides", "mel"}
    if unknown:
        raise InputError(f"unknown fields: {', '.join(sorted(unknown))}")
    _sections(body, {"settings": (TRAIN_SETTINGS_FIELDS, TRAIN_BOUNDS),
                     "overrides": (MODEL_FIELDS, MODEL_BOUNDS),
                     "mel": (MEL_FIELDS, MEL_BOUNDS)})  # fmt: skip
    try:
        mel = MelConfig.from_dict(body.get("mel", {}))
        VQVAEConfig.from_file_count(1, mel=mel, **body.get("overrides", {}))
    except (TypeError, ValueError) as error:  # how the fields fit together
        raise InputError(f"these options do not fit together: {error}") from None
    _model_name(body.get("model_name"))
    return body


def prior_api_request(body: Any) -> dict[str, Any]:
    """A JSON PriorRequest from the API: known fields only, like api_request."""
    if not isinstance(body, dict):
        raise InputError('send a JSON object: {"model": "NAME", ...}')
    unknown = set(body) - {"model", "dataset", "settings", "overrides"}
    if unknown:
        raise InputError(f"unknown fields: {', '.join(sorted(unknown))}")
    _sections(body, {"settings": (PRIOR_SETTINGS_FIELDS, PRIOR_BOUNDS),
                     "overrides": (PRIOR_SIZE_FIELDS, PRIOR_SIZE_BOUNDS)})  # fmt: skip
    overrides = body.get("overrides", {})
    hidden, heads = overrides.get("hidden_size"), overrides.get("heads")
    if hidden is not None and heads is not None and hidden % heads:
        raise InputError(f"overrides.heads ({heads}) must divide overrides.hidden_size ({hidden})")
    return body


GENERATE_FIELDS = frozenset(f.name for f in dataclasses.fields(GenerateRequest))
MAX_GRIFFIN_LIM_ITERS = 256


def generate_api_request(body: Any) -> dict[str, Any]:
    """A JSON GenerateRequest from the API: known fields only, each within the bounds the
    form applies; no output folder (a server writes only into its model's history)."""
    if not isinstance(body, dict):
        raise InputError('send a JSON object: {"model": "NAME", "count": 4, ...}')
    unknown = set(body) - GENERATE_FIELDS
    if unknown:
        raise InputError(f"unknown fields: {', '.join(sorted(unknown))}")
    if body.pop("out", None) is not None:
        raise InputError("out: a server writes clips only into the model's history")
    if "griffin_lim_iters" in body:
        body["griffin_lim_iters"] = json_int(
            body["griffin_lim_iters"], "griffin_lim_iters", 1, MAX_GRIFFIN_LIM_ITERS
        )
    drop = ("model", "seconds", "one_shot", "variation", "griffin_lim_iters")
    options = {k: v for k, v in body.items() if k not in drop}
    try:
        check_section("generate", options, SAMPLING_BOUNDS)
    except BoundsError as error:
        raise InputError(str(error)) from None
    if "seconds" in body:
        body["seconds"] = json_number(body["seconds"], "seconds", 0.01, MAX_PAGE_SECONDS)
    if not isinstance(body.get("variation", False), bool):
        raise InputError(f"variation must be true or false, not {body['variation']!r}")
    if body.get("one_shot") not in (None, True, False):
        raise InputError(f"one_shot must be true, false or null, not {body['one_shot']!r}")
    return body


def _sections(body: dict[str, Any], sections: dict[str, tuple[frozenset[str], dict]]) -> None:
    for key, (known, bounds) in sections.items():
        value = body.get(key, {})
        if not isinstance(value, dict):
            raise InputError(f"{key} must be an object")
        if set(value) - known:
            raise InputError(f"unknown {key}: {', '.join(sorted(set(value) - known))}")
        try:
            check_section(key, value, bounds)
        except BoundsError as error:
            raise InputError(str(error)) from None


def library_model_name(model: str, home: Path) -> str:
    """A model the server may change: a name in its library, or a path to a file in it."""
    path = Path(model).expanduser()
    if path.suffix == ".distill" or len(path.parts) > 1:
        if path.resolve().parent != models_dir(home).resolve():
            raise InputError(
                f"{model} is not in this server's model library: import it first"
                " (`distill models import`), then name it"
            )
        model = path.stem
    return _model_name(model) or ""


def _model_name(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        return check_model_name(name)
    except ValueError as error:
        raise InputError(str(error)) from None


def whole_number(value: Any, what: str, low: int, high: int) -> int:
    """`value` as an int from `low` to `high`; InputError (400) saying so otherwise."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        raise InputError(f"{what} must be a whole number") from None
    if not low <= number <= high:
        raise InputError(f"{what} must be {low} to {high}")
    return number


def json_int(value: Any, what: str, low: int, high: int) -> int:
    """A JSON integer from `low` to `high`: not 1.5 (which int() would make 1), not true."""
    if type(value) is not int:
        raise InputError(f"{what} must be a whole number, not {json.dumps(value)[:40]}")
    return whole_number(value, what, low, high)


def json_number(value: Any, what: str, low: float, high: float) -> float:
    """A JSON number from `low` to `high`: not true (which counts as 1), not a string."""
    if type(value) not in (int, float):
        raise InputError(f"{what} must be a number, not {json.dumps(value)[:40]}")
    return _float(value, what, low, high)


def bounded_json(value: Any) -> Any:
    """A parsed JSON body, refused (InputError) if any number in it is out of bounds:
    an integer past MAX_REQUEST_INT, or NaN or an infinity (Python's json reads both)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int) and abs(item) > MAX_REQUEST_INT:
            raise InputError("a number in the request is too large (2^53 at most)")
        elif isinstance(item, float) and not math.isfinite(item):
            raise InputError(f"numbers in a request must be finite, not {item}")
    return value


def _float(value: Any, what: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number") from None
    if not low <= number <= high:  # also refuses NaN
        raise InputError(f"{what} must be {low:g} to {high:g}")
    return number
