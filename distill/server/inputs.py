"""What the server accepts from a user: dataset folders, uploads, training options.

Every check here turns bad input into an `InputError` with a message a person can act on;
nothing from a request reaches the file system or the core unchecked.
"""

from __future__ import annotations

import dataclasses
import math
import re
import secrets
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from distill.models.card_schema import MAX_PRIOR_HEADS, MAX_PRIOR_HIDDEN_SIZE, MAX_PRIOR_LAYERS
from distill.models.config import (
    MAX_COMMITMENT_WEIGHT,
    MAX_RVQ_LEVELS,
    MIN_RVQ_LEVELS,
    PriorConfig,
    VQVAEConfig,
)
from distill.paths import check_model_name, models_dir
from distill.server.settings import ServerSettings
from distill.training.settings import MAX_PATIENCE, MAX_STAGE_STEPS, PriorSettings, TrainSettings

MAX_EPOCHS = 1000
MAX_PAGE_SECONDS = 60.0  # a generate request from a page: seconds per clip
MAX_PAGE_CLIPS = 8  # and clips per request
# The largest whole number a request may carry anywhere: JSON's exact integers, well
# inside SQLite's 64-bit ones (a bigger one overflowed into a 500 or a 1011 close).
MAX_REQUEST_INT = 2**53
MAX_SEQ = MAX_REQUEST_INT  # a WebSocket's `after`
MAX_PAGE = 10**9  # the runs list's `page`
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")
MAX_FILE_NAME = 120  # characters of an uploaded file's name that are kept
MAX_EXTENSION = 16  # a longer "extension" is part of the name
TRAIN_SETTINGS_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainSettings))
MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(VQVAEConfig)) - {"mel"}
PRIOR_SETTINGS_FIELDS = frozenset(f.name for f in dataclasses.fields(PriorSettings))
PRIOR_SIZE_FIELDS = frozenset(f.name for f in dataclasses.fields(PriorConfig)) - {
    "levels",
    "codebook_size",
}


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
                raise BodyTooLarge(_too_large(max_bytes), status=413)
        return message

    return wrapped


def check_length(request: Request, max_bytes: int) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise BodyTooLarge(_too_large(max_bytes), status=413)


def _too_large(max_bytes: int) -> str:
    return f"the upload is larger than this server accepts ({max_bytes / 1024**2:.0f} MiB at most)"


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
    """(settings, overrides, model name) from the new-run form's fields, checked."""
    levels = whole_number(
        form.get("rvq_levels", VQVAEConfig.rvq_levels), "RVQ levels", MIN_RVQ_LEVELS, MAX_RVQ_LEVELS
    )
    epochs = whole_number(form.get("epochs", TrainSettings.epochs), "epochs", 1, MAX_EPOCHS)
    try:
        weight = float(form.get("commitment_weight", VQVAEConfig.commitment_weight))
    except (TypeError, ValueError):
        raise InputError(
            f"the commitment weight must be a number, like {VQVAEConfig.commitment_weight}"
        ) from None
    if not 0 <= weight <= MAX_COMMITMENT_WEIGHT:
        raise InputError(f"the commitment weight must be between 0 and {MAX_COMMITMENT_WEIGHT:g}")
    stage_steps = whole_number(
        form.get("stage_steps", TrainSettings.stage_steps),
        "decoder stage steps",
        0,
        MAX_STAGE_STEPS,
    )
    patience = whole_number(
        form.get("patience", TrainSettings.patience), "patience", 0, MAX_PATIENCE
    )
    name = (form.get("model_name") or "").strip() or None
    return (
        {"epochs": epochs, "stage_steps": stage_steps, "patience": patience},
        {"rvq_levels": levels, "commitment_weight": weight},
        _model_name(name),
    )


def prior_options(form: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, overrides) from the train-prior form; an empty size field means auto."""
    epochs = whole_number(form.get("epochs", PriorSettings.epochs), "epochs", 1, MAX_EPOCHS)
    learning_rate = _float(form.get("learning_rate", PriorSettings.learning_rate),
                           "the learning rate", 1e-6, 1.0)  # fmt: skip
    overrides = {}
    for field, what, high in (("hidden_size", "hidden size", MAX_PRIOR_HIDDEN_SIZE),
                              ("layers", "layers", MAX_PRIOR_LAYERS),
                              ("heads", "heads", MAX_PRIOR_HEADS)):  # fmt: skip
        raw = str(form.get(field) or "").strip()
        overrides[field] = whole_number(raw, what, 1, high) if raw else None
    hidden, heads = overrides["hidden_size"], overrides["heads"]
    if hidden is not None and heads is not None and hidden % heads:
        raise InputError(f"heads ({heads}) must divide the hidden size ({hidden})")
    patience = whole_number(
        form.get("patience", PriorSettings.patience), "patience", 0, MAX_PATIENCE
    )
    return {"epochs": epochs, "learning_rate": learning_rate, "patience": patience}, overrides


def generate_options(form: dict[str, Any]) -> dict[str, Any]:
    """GenerateSpec fields from the generate form, within what a page should wait for."""
    options: dict[str, Any] = {
        "seconds": _float(form.get("seconds", 4.0), "seconds", 0.1, MAX_PAGE_SECONDS),
        "count": whole_number(form.get("count", 1), "count", 1, MAX_PAGE_CLIPS),
        "temperature": _float(form.get("temperature", 1.0), "the temperature", 0.0, 5.0),
        "top_k": whole_number(form.get("top_k", 0), "top-k", 0, 1_000_000),
        "top_p": _float(form.get("top_p", 1.0), "top-p", 0.0, 1.0),
        "seed": whole_number(form.get("seed", 0), "the seed", 0, 2**31 - 1),
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
    """A JSON TrainRequest from the API: known fields only, so a typo is an error here."""
    if not isinstance(body, dict):
        raise InputError('send a JSON object: {"dataset": "/path/to/sounds", ...}')
    unknown = set(body) - {"dataset", "model_name", "settings", "overrides", "mel"}
    if unknown:
        raise InputError(f"unknown fields: {', '.join(sorted(unknown))}")
    for key, known in (("settings", TRAIN_SETTINGS_FIELDS), ("overrides", MODEL_FIELDS)):
        value = body.get(key, {})
        if not isinstance(value, dict):
            raise InputError(f"{key} must be an object")
        if set(value) - known:
            raise InputError(f"unknown {key}: {', '.join(sorted(set(value) - known))}")
    if not isinstance(body.get("mel", {}), dict):
        raise InputError("mel must be an object")
    _model_name(body.get("model_name"))
    return body


def prior_api_request(body: Any) -> dict[str, Any]:
    """A JSON PriorRequest from the API: known fields only, like api_request."""
    if not isinstance(body, dict):
        raise InputError('send a JSON object: {"model": "NAME", ...}')
    unknown = set(body) - {"model", "dataset", "settings", "overrides"}
    if unknown:
        raise InputError(f"unknown fields: {', '.join(sorted(unknown))}")
    for key, known in (("settings", PRIOR_SETTINGS_FIELDS), ("overrides", PRIOR_SIZE_FIELDS)):
        value = body.get(key, {})
        if not isinstance(value, dict):
            raise InputError(f"{key} must be an object")
        if set(value) - known:
            raise InputError(f"unknown {key}: {', '.join(sorted(set(value) - known))}")
    return body


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
