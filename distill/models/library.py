"""The model library: trained models as `.distill` files, found by name or path.

A model file holds the ConvVQVAE's weights under `vqvae.` and a card in its metadata:
config, dataset, codebook health, loss curves and training facts. The card reads
without touching the weights (`read_card`).
"""

from __future__ import annotations

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
        path = model_path(name_or_path, home)
    except ValueError:
        path = None
    if path is None or not path.is_file():
        raise ModelFileError(f"no model named {name_or_path!r} in the library and no such file")
    return path


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


def _check_type(path: Path, metadata: dict[str, Any]) -> None:
    if metadata.get("type") != MODEL_TYPE:
        raise ModelFileError(
            f"{path.name} is a distill file but not a model (type {metadata.get('type')!r})"
        )
