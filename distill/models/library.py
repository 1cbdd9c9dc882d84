"""The model library: trained models as `.distill` files, found by name or path.

A model file holds the ConvVQVAE's weights under `vqvae.` and a card in its metadata:
config, dataset, codebook health, loss curves and training facts. The card reads
without touching the weights (`read_card`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from distill.models.config import VQVAEConfig
from distill.models.model_file import (
    FILE_EXTENSION,
    ModelFileError,
    load_model_file,
    read_model_metadata,
    save_model_file,
)
from distill.models.rvqvae import ConvVQVAE
from distill.paths import model_path, models_dir

MODEL_TYPE = "distill-model"
def resolve_model(name_or_path: str, home: Path | None = None) -> Path:
    """An existing file path, else a model of that name in the library."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate.resolve()
    try:
        return resolve_library_model(name_or_path, home)
    except ModelFileError:
        raise ModelFileError(
            f"no model named {name_or_path!r} in the library and no such file"
        ) from None


def list_models(home: Path | None = None) -> list[Path]:
    return sorted(models_dir(home).glob(f"*{FILE_EXTENSION}"))


def save_vqvae(path: Path, model: ConvVQVAE, card: dict[str, Any]) -> Path:
    tensors = {f"vqvae.{k}": v for k, v in model.state_dict().items()}
    metadata = {"type": MODEL_TYPE, **card, "config": model.config.to_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_model_file(path, tensors, metadata)


def read_card(path: Path) -> dict[str, Any]:
    """The model's card, validated, without loading weights."""
    metadata = read_model_metadata(path)
    _check_type(path, metadata)
    return metadata


def load_vqvae(path: Path) -> tuple[ConvVQVAE, dict[str, Any]]:
    """The model in eval mode, and its card. Refuses files whose weights do not fit the config."""
    metadata, tensors = load_model_file(path)
    _check_type(path, metadata)
    try:
        model = ConvVQVAE(VQVAEConfig.from_dict(metadata["config"]))
        state = {k.removeprefix("vqvae."): v for k, v in tensors.items() if k.startswith("vqvae.")}
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ModelFileError(
            f"{path.name}: weights do not match the model's config ({error})"
        ) from error
    model.eval()
    return model, metadata


def import_model(source: Path, name: str | None = None, home: Path | None = None) -> Path:
    """Copy a model file into the library under `name` (default: its file name).

    The whole file is checked first (checksum, every tensor, weights against config), so
    a bad file is refused with the reason and never lands in the library. It is written
    anew, with the card's name set to the library name.
    """
    source = Path(source).expanduser()
    if not source.is_file():
        raise ModelFileError(f"no such file: {source}")
    metadata, tensors = load_model_file(source)
    _check_type(source, metadata)
    load_vqvae(source)  # the weights must fit the config, not just parse
    target = _free_name(name or source.name.removesuffix(FILE_EXTENSION), home)
    return save_model_file(target, tensors, {**metadata, "name": target.stem})


def rename_model(old: str, new: str, home: Path | None = None) -> Path:
    """Give a library model a new name (its card's name too)."""
    source = resolve_library_model(old, home)
    target = _free_name(new, home)
    metadata, tensors = load_model_file(source)
    save_model_file(target, tensors, {**metadata, "name": target.stem})
    source.unlink()
    return target


def delete_model(name: str, home: Path | None = None) -> Path:
    path = resolve_library_model(name, home)
    path.unlink()
    return path


def export_model(name: str, destination: Path, home: Path | None = None) -> Path:
    """Copy a library model out, byte for byte, to a file or into a folder (atomically)."""
    source = resolve_library_model(name, home)
    destination = Path(destination).expanduser()
    if destination.is_dir():
        destination = destination / source.name
    tmp = destination.with_name(f".{destination.name}.export.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)
    return destination


def resolve_library_model(name: str, home: Path | None = None) -> Path:
    """A model of that name in the library (never a path elsewhere: these change files)."""
    try:
        path = model_path(name, home)
    except ValueError as error:
        raise ModelFileError(str(error)) from error
    if not path.is_file():
        raise ModelFileError(f"no model named {name!r} in the library")
    return path


def _free_name(name: str, home: Path | None) -> Path:
    try:
        path = model_path(name, home)
    except ValueError as error:
        raise ModelFileError(str(error)) from error
    if path.exists():
        raise ModelFileError(f"a model named {name!r} is already in the library")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _check_type(path: Path, metadata: dict[str, Any]) -> None:
    if metadata.get("type") != MODEL_TYPE:
        raise ModelFileError(
            f"{path.name} is a distill file but not a model (type {metadata.get('type')!r})"
        )
