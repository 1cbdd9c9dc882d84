"""The model library: trained models as `.distill` files, found by name or path.

A model file holds the ConvVQVAE's weights under `vqvae.` and a card in its metadata:
config, dataset, codebook health, loss curves and training facts. The card reads
without touching the weights (`read_card`).

Once a prior is trained, the same file also holds its weights under `prior.`, the
training files' codes under `prior_codes.` (for the copy check of generated clips: they
are a lossy encoding of the training sounds, so a shared model file carries them too),
and the card gains a "prior" section: its config (with context_steps and rvq_levels),
curves and training facts. `read_card(path).prior` is None until a model has one.

Every card read here is upgraded to today's names first (models/card.py), then checked;
readers get a typed ModelCard.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from distill.files import atomic_file
from distill.models.card import ModelCard, PriorCard, upgrade_card
from distill.models.card_schema import (
    MODEL_TYPE,
    TensorShapes,
    check_card,
    check_tensors,
    check_training_codes,
)
from distill.models.config import VQVAEConfig
from distill.models.history import move_history, set_aside_history
from distill.models.model_file import (
    FILE_EXTENSION,
    MAX_MODEL_FILE_BYTES,
    ModelFileError,
    copy_model_file,
    load_model_file,
    open_model_file,
    read_model_header,
    read_model_metadata,
    read_tensor_chunks,
    save_model_file,
    tensor_dtype,
)
from distill.paths import model_path, models_dir

if TYPE_CHECKING:  # the model classes load on first use: listing the library needs none
    import torch

    from distill.models.prior import CodePrior
    from distill.models.rvqvae import ConvVQVAE

PRIOR_PREFIXES = ("prior.", "prior_codes.")


class ModelWithPrior(NamedTuple):
    """Everything generation needs, from one file."""

    vqvae: ConvVQVAE
    prior: CodePrior
    card: ModelCard
    training_codes: list[torch.Tensor]  # per training file of the prior: (t, q) long

    @property
    def prior_card(self) -> PriorCard:
        assert self.card.prior is not None, "load_with_prior refuses a file without a prior"
        return self.card.prior


class Listed(NamedTuple):
    """One file of the library: its card, or why it cannot be read."""

    path: Path
    card: ModelCard | None
    unreadable: str | None  # the reason, when card is None


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


def list_cards(home: Path | None = None) -> list[Listed]:
    """Every model file's card; a file that cannot be read is listed with the reason, so
    one bad file never hides the others."""
    return [listed(path) for path in list_models(home)]


def listed(path: Path) -> Listed:
    """One model file's card, or why it cannot be read."""
    try:
        return Listed(path, read_card(path), None)
    except (ModelFileError, OSError) as error:
        return Listed(path, None, str(error))


def save_vqvae(path: Path, model: ConvVQVAE, card: dict[str, Any]) -> Path:
    """Write a trained VQ-VAE and its card; a card the schema would refuse is never written."""
    tensors = {f"vqvae.{k}": v for k, v in model.state_dict().items()}
    metadata = {"type": MODEL_TYPE, **card, "config": model.config.to_dict()}
    with _about(path.name):
        check_card(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_model_file(path, tensors, metadata)


def read_card(path: Path) -> ModelCard:
    """The model's card, checked against the schema (models/card_schema.py), without
    loading weights or torch."""
    return _typed_card(read_metadata(path), path.stem)


def read_metadata(path: Path) -> dict[str, Any]:
    """The card as the JSON it is, with today's names, checked: for code that rewrites it."""
    metadata = upgrade_card(read_model_metadata(path))
    with _about(path.name):
        check_card(metadata)
    return metadata


def load_vqvae(path: Path) -> tuple[ConvVQVAE, ModelCard]:
    """The model in eval mode, and its card. Refuses files whose weights do not fit the config."""
    metadata, tensors = _load(path)
    with _about(path.name):
        _check(metadata, _shapes(tensors), lambda name: [tensors[name].reshape(-1)])
    return _build_vqvae(path, metadata, tensors), _typed_card(metadata, path.stem)


def _typed_card(metadata: dict[str, Any], name: str) -> ModelCard:
    """The checked card as a ModelCard; a card the schema let through that still does not
    build one (a rule of the configs the schema does not know) is refused like any other."""
    try:
        return ModelCard.from_dict(metadata, name)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{name}: card: {error}") from error


def _load(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    metadata, tensors = load_model_file(path)
    return upgrade_card(metadata), tensors


def _check(
    metadata: dict[str, Any],
    shapes: TensorShapes,
    values: Callable[[str], Iterable[torch.Tensor]],
) -> None:
    """The card against the schema, then the file's tensors against what its configs build,
    then the prior's codes, whose values `values(name)` gives in flat chunks. Nothing real
    is built before all of it holds."""
    check_card(metadata)
    prior_config = metadata["prior"]["config"] if "prior" in metadata else None
    try:
        vqvae, prior = _expected_shapes(
            json.dumps(metadata["config"], sort_keys=True), json.dumps(prior_config)
        )
    except ValueError as error:  # a rule of the configs the schema does not know (yet)
        raise ModelFileError(f"config: {error}") from error
    check_tensors(metadata, shapes, vqvae, prior)
    if prior is not None:
        ranges = [(int(c.min()), int(c.max())) for c in values("prior_codes.steps") if c.numel()]
        low, high = min((r[0] for r in ranges), default=0), max((r[1] for r in ranges), default=0)
        counts = [n for chunk in values("prior_codes.file_steps") for n in chunk.tolist()]
        rows = shapes["prior_codes.steps"][1][0]
        check_training_codes(metadata, rows, low, high, counts)


@functools.lru_cache(maxsize=16)
def _expected_shapes(config: str, prior_config: str) -> tuple[TensorShapes, TensorShapes | None]:
    """The tensors the configs (as JSON) build, from modules built on torch's meta device:
    shapes without storage. Cached: a model is loaded again and again to generate."""
    import torch

    from distill.models.config import PriorConfig
    from distill.models.prior import CodePrior
    from distill.models.rvqvae import ConvVQVAE

    with torch.device("meta"):
        vqvae = _shapes(ConvVQVAE(VQVAEConfig.from_dict(json.loads(config))).state_dict())
        prior = json.loads(prior_config)
        if prior is not None:
            prior = _shapes(CodePrior(PriorConfig.from_dict(prior)).state_dict())
    return vqvae, prior


def _shapes(tensors: dict[str, torch.Tensor]) -> TensorShapes:
    return {name: (tensor_dtype(t), tuple(t.shape)) for name, t in tensors.items()}


@contextlib.contextmanager
def _about(label: str) -> Iterator[None]:
    """Refusals inside name the file (or what the user gave) they are about."""
    try:
        yield
    except ModelFileError as error:
        raise ModelFileError(f"{label}: {error}") from error


def _build_vqvae(path: Path, metadata: dict[str, Any], tensors: dict) -> ConvVQVAE:
    from distill.models.rvqvae import ConvVQVAE

    try:
        model = ConvVQVAE(VQVAEConfig.from_dict(metadata["config"]))
        model.load_state_dict(_with_prefix(tensors, "vqvae."), strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ModelFileError(
            f"{path.name}: weights do not match the model's config ({error})"
        ) from error
    return model.eval()


def save_prior(
    path: Path,
    prior: CodePrior,
    prior_card: dict[str, Any],
    training_codes: list[torch.Tensor],
    model_created: str | None,
) -> Path:
    """Rewrite the model's file with this prior in it, replacing any earlier prior, atomically.

    `model_created` is the card's "created" when the prior's codes were extracted: if
    the file now holds another model (retrained under the same name meanwhile), the
    prior would not fit it, and saving is refused.
    """
    metadata, tensors = _load(path)
    with _about(path.name):
        check_card(metadata)
    if metadata.get("created") != model_created:
        raise ModelFileError(
            f"{path.name} was replaced by another model while its prior trained; "
            "train the prior again on the new model"
        )
    import torch

    kept = {k: v for k, v in tensors.items() if not k.startswith(PRIOR_PREFIXES)}
    kept |= {f"prior.{k}": v for k, v in prior.state_dict().items()}
    kept["prior_codes.steps"] = torch.cat(training_codes).to(torch.int16)  # (sum t, q)
    kept["prior_codes.file_steps"] = torch.tensor([len(c) for c in training_codes])
    card = {**prior_card, "config": prior.config.to_dict()}
    with _about(path.name):
        check_card({**metadata, "prior": card})
    return save_model_file(path, kept, {**metadata, "prior": card})


def load_with_prior(path: Path) -> ModelWithPrior:
    """The VQ-VAE and its prior in eval mode; a model without a prior is refused by name."""
    from distill.models.config import PriorConfig
    from distill.models.prior import CodePrior

    metadata, tensors = _load(path)
    with _about(path.name):
        _check(metadata, _shapes(tensors), lambda name: [tensors[name].reshape(-1)])
    if "prior" not in metadata:
        raise ModelFileError(
            f"{path.name} has no prior yet: train one with `distill train-prior {path.stem}`"
        )
    vqvae = _build_vqvae(path, metadata, tensors)
    try:
        prior = CodePrior(PriorConfig.from_dict(metadata["prior"]["config"]))
        prior.load_state_dict(_with_prefix(tensors, "prior."), strict=True)
        steps = tensors["prior_codes.steps"].long()
        counts = tensors["prior_codes.file_steps"].tolist()
        codes = list(steps.split(counts)) if steps.numel() else []
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ModelFileError(
            f"{path.name}: the prior's weights do not match its config ({error})"
        ) from error
    return ModelWithPrior(vqvae, prior.eval(), _typed_card(metadata, path.stem), codes)


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def import_model(
    source: Path,
    name: str | None = None,
    home: Path | None = None,
    max_bytes: int = MAX_MODEL_FILE_BYTES,
) -> Path:
    """Copy a model file into the library under `name` (default: its file name); every
    refusal names `source` as given."""
    source = Path(source).expanduser()
    with open_model_file(source) as (f, size):  # refusals inside are prefixed with source
        return import_stream(f, size, name or source.name.removesuffix(FILE_EXTENSION),
                             home, max_bytes)  # fmt: skip


def import_stream(
    f: BinaryIO, size: int, name: str, home: Path | None = None,
    max_bytes: int = MAX_MODEL_FILE_BYTES,
) -> Path:  # fmt: skip
    """Copy the model file open as `f` into the library as `name`, streamed: the whole file
    is checked first (size, checksum, card, every tensor's shape against the config, the
    prior's codes) without holding its weights, so a bad file is refused with the reason
    and never lands in the library. It is written anew, with the card's name set to the
    library name. Refusals do not name the file: the caller knows what the user gave."""
    if size > max_bytes:
        raise ModelFileError(
            f"the file is {size / 1024**2:.1f} MiB; the library imports model files of up "
            f"to {max_bytes / 1024**2:.0f} MiB"
        )
    target = _free_name(name, home)  # before reading what may be hundreds of MiB
    header = read_model_header(f, size)
    metadata = upgrade_card(header.metadata)
    shapes = {n: (e.dtype, tuple(e.shape)) for n, e in header.tensors.items()}
    _check(metadata, shapes, lambda name: read_tensor_chunks(f, header, name))
    return copy_model_file(f, header, {**metadata, "name": target.stem}, target)


def rename_model(old: str, new: str, home: Path | None = None) -> Path:
    """Give a library model a new name (its card's name too); the sounds it generated
    move with it. The file is copied in chunks, never held whole."""
    source = resolve_library_model(old, home)
    target = _free_name(new, home)
    rewrite_card(source, target, lambda card: {**card, "name": target.stem})
    source.unlink()
    move_history(source.stem, target.stem, home)
    return target


class Deleted(NamedTuple):
    model: Path  # the file that was removed
    sounds: Path | None  # where the sounds it generated were set aside, if it made any


def rewrite_card(source: Path, target: Path, change: Callable[[dict], dict]) -> Path:
    """Write `target`: the model file `source` with its card changed by `change`, the
    weights copied in chunks as they are (never held whole)."""
    with open_model_file(source) as (f, size):
        header = read_model_header(f, size)
        return copy_model_file(f, header, change(upgrade_card(header.metadata)), target)


def delete_model(name: str, home: Path | None = None) -> Deleted:
    """Take a model out of the library. The sounds it generated are kept but set aside,
    so that a later model of the same name starts with an empty history."""
    path = resolve_library_model(name, home)
    path.unlink()
    return Deleted(path, set_aside_history(path.stem, home))


def export_model(name: str, destination: Path, home: Path | None = None) -> Path:
    """Copy a library model out, byte for byte, to a file or into a folder (atomically)."""
    source = resolve_library_model(name, home)
    destination = Path(destination).expanduser()
    if destination.is_dir():
        destination = destination / source.name
    with open(source, "rb") as model, atomic_file(destination) as copy:
        shutil.copyfileobj(model, copy)
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
