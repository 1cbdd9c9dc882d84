"""Mutants of a valid model file, sealed with a fresh checksum, and the one rule they obey.

A checksum is not a signature, so these mutants get past it: each changes the metadata
(config values of the wrong type, huge, negative, NaN, infinite; keys missing or extra;
the JSON text itself), the safetensors header (shapes, dtypes, names) or the weights'
values, and recomputes the checksum. Some rebuild the weights to fit a changed config,
so that they load. Every mutant must end in a clean ModelFileError or in a model that
loads and runs; read_card, the loaders and import must agree on which.

Shared by tests/test_model_card_fuzz.py (a few hundred mutants) and bench/model_fuzz.py
(tens of thousands).
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import safetensors.torch
import torch
from container import U64, build_file, split_file
from helpers import TINY_MEL, TINY_MODEL, TINY_PRIOR, model_card, prior_card

from distill.audio.mel import MelSpectrogram, mel_to_audio
from distill.inference.generate import copy_checker
from distill.models.card_schema import check_card, prior_elements, seconds_per_step, vqvae_elements
from distill.models.config import PriorConfig, VQVAEConfig
from distill.models.library import (
    import_model,
    load_vqvae,
    load_with_prior,
    read_card,
    save_prior,
    save_vqvae,
)
from distill.models.model_file import ModelFileError
from distill.models.prior import CodePrior
from distill.models.rvqvae import ConvVQVAE
from distill.models.sampling import generate_codes

SEED = 0x14CA2D
REFUSED, LOADED = "refused", "loaded"
REBUILD_MOST_ELEMENTS = 300_000  # a changed config gets fresh weights when this small
FILE_STEPS = [5, 0, 7]  # the training codes' steps per file in the base model

HOSTILE = [
    "x", "", "1", None, True, False, [], {}, [1, 2], {"a": 1}, 0, -1, 1, 2, 3, 7, 1000,
    2**31, 2**63, 2**64, -(2**63), 10**30, 1e9, 1e308, -1e308, 1e-300, 0.5, -0.5, 3.0,
    math.nan, math.inf, -math.inf,
]  # fmt: skip
PLAUSIBLE = [0, 1, 2, 3, 4, 5, 8, 16, 32, 64, 0.0, 0.1, 0.5, 0.99, 1.0, 2.0, None]


class Mutant(NamedTuple):
    description: str
    data: bytes  # the whole file, checksum sealed again
    kind: str = ""  # the generator's name: value, missing, extra, json_text, header, ...


def base_model(folder: Path) -> Path:
    """A tiny VQ-VAE with a tiny prior and its training codes, in one file."""
    torch.manual_seed(SEED)
    config = VQVAEConfig(mel=TINY_MEL, **TINY_MODEL)
    path = save_vqvae(folder / "base.distill", ConvVQVAE(config), model_card("base"))
    prior = CodePrior(_prior_config(config))
    codes = [torch.randint(0, config.codebook_size, (n, config.rvq_levels)) for n in FILE_STEPS]
    names = [f"sound-{i}.wav" for i in range(len(FILE_STEPS))]
    card = prior_card(names, seconds_per_step(config.to_dict()))
    return save_prior(path, prior, card, codes, "today")


def _prior_config(config: VQVAEConfig) -> PriorConfig:
    return PriorConfig(
        rvq_levels=config.rvq_levels,
        codebook_size=config.codebook_size,
        context_steps=config.window_steps,
        **TINY_PRIOR,
    )


def split(data: bytes) -> tuple[dict, bytes]:
    """(metadata, weights blob) of a whole file."""
    _, meta, blob = split_file(data)
    return json.loads(meta), blob


def seal(meta: dict | bytes, blob: bytes) -> bytes:
    """A file around metadata (a dict, or raw JSON bytes) and a blob, checksum recomputed."""
    return build_file(meta if isinstance(meta, bytes) else json.dumps(meta).encode(), blob)


def blob_parts(blob: bytes) -> tuple[dict, bytes]:
    (length,) = U64.unpack_from(blob)
    return json.loads(blob[8 : 8 + length]), blob[8 + length :]


def blob_of(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return U64.pack(len(raw)) + raw + data


# -- mutants ---------------------------------------------------------------------------------


def mutants(rng: random.Random, good: bytes, count: int) -> Iterator[Mutant]:
    meta, blob = split(good)
    kinds = [_value, _value, _value, _missing, _extra, _json_text, _header, _codes, _rebuilt]
    for _ in range(count):
        make = rng.choice(kinds)
        yield make(rng, copy.deepcopy(meta), blob)._replace(kind=make.__name__.strip("_"))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside the card (dict keys and list indices)."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        found.append((*prefix, key))
        if isinstance(value, dict | list):
            found += _paths(value, (*prefix, key))
    return found


def _config_paths(meta: dict) -> list[tuple]:
    return [p for p in _paths(meta) if p[0] == "config" or p[:2] == ("prior", "config")]


def _parent(meta: dict, path: tuple) -> Any:
    node = meta
    for key in path[:-1]:
        node = node[key]
    return node


def _value(rng: random.Random, meta: dict, blob: bytes) -> Mutant:
    """One value replaced: mostly config values, sometimes any field of the card."""
    path = rng.choice(_config_paths(meta) if rng.random() < 0.7 else _paths(meta))
    parent = _parent(meta, path)
    old = parent[path[-1]]
    new = rng.choice(HOSTILE + _near(old))
    parent[path[-1]] = new
    return Mutant(f"{'.'.join(map(str, path))}: {old!r} -> {new!r}", seal(meta, blob))


def _near(value: Any) -> list[Any]:
    """Values next to a number: off by one, doubled, halved, the float of an int."""
    if type(value) is int:
        return [value + 1, value - 1, value * 2, value // 2, float(value), -value, str(value)]
    if type(value) is float and math.isfinite(value):
        return [value * 2, value / 2, -value, value + 1]
    return []


def _missing(rng: random.Random, meta: dict, blob: bytes) -> Mutant:
    path = rng.choice(_config_paths(meta) if rng.random() < 0.6 else _paths(meta))
    del _parent(meta, path)[path[-1]]
    return Mutant(f"{'.'.join(map(str, path))} removed", seal(meta, blob))


def _extra(rng: random.Random, meta: dict, blob: bytes) -> Mutant:
    objects = [()] + [p for p in _paths(meta) if isinstance(_parent(meta, p)[p[-1]], dict)]
    path = rng.choice(objects)
    node = meta if not path else _parent(meta, path)[path[-1]]
    key = rng.choice(["extra", "mel", "config", "levels", "hidden_channels", "__class__"])
    node[key] = rng.choice(HOSTILE)
    return Mutant(f"{'.'.join(map(str, path)) or 'card'} gains {key}", seal(meta, blob))


def _json_text(rng: random.Random, meta: dict, blob: bytes) -> Mutant:
    """The JSON text edited: a character replaced, inserted or removed."""
    text = bytearray(json.dumps(meta).encode())
    at = rng.randrange(len(text))
    op = rng.choice(["replace", "insert", "delete"])
    char = rng.choice(b'{}[]",:0123456789-.eEaNIn \\')
    if op == "replace":
        text[at] = char
    elif op == "insert":
        text.insert(at, char)
    else:
        del text[at]
    return Mutant(f"metadata JSON: {op} at {at}", seal(bytes(text), blob))


def _header(rng: random.Random, meta: dict, blob: bytes) -> Mutant:
    """The safetensors header changed but kept consistent with its data, so that only the
    check against the config can refuse it: a shape reshaped, a dtype of the same size, a
    tensor renamed, dropped or added."""
    header, data = blob_parts(blob)
    names = [n for n in header if n != "__metadata__"]
    name = rng.choice(names)
    entry = header[name]
    op = rng.choice(["reshape", "dtype", "rename", "drop", "add"])
    if op == "reshape":
        count = math.prod(entry["shape"])
        entry["shape"] = rng.choice(
            [[count], [1, count], [count, 1], list(reversed(entry["shape"]))]
        )
    elif op == "dtype":
        same_size = {"F32": "I32", "I32": "F32", "I64": "F64", "F64": "I64", "I16": "F16",
                     "F16": "BF16", "BF16": "I16", "BOOL": "U8", "U8": "I8", "I8": "BOOL"}  # fmt: skip
        entry["dtype"] = same_size[entry["dtype"]]
    elif op == "rename":
        header[rng.choice([name + "x", "junk." + name, "prior." + name, "vqvae.extra"])] = (
            header.pop(name)
        )
    elif op in ("drop", "add"):
        tensors = _tensors(blob)
        if op == "drop":
            del tensors[name]
        else:
            tensors[rng.choice(["vqvae.extra", "prior.extra", "prior_codes.extra", "x"])] = (
                torch.zeros(rng.randint(0, 3))
            )
        return Mutant(f"tensor {name}: {op}", seal(meta, safetensors.torch.save(tensors)))
    return Mutant(f"tensor {name}: {op}", seal(meta, blob_of(header, data)))


def _tensors(blob: bytes) -> dict[str, torch.Tensor]:
    return safetensors.torch.load(blob)


def _codes(rng: random.Random, meta: dict, blob: bytes) -> Mutant:
    """The prior's training codes given other values (out of range, counts that do not
    add up), or training files that do not match them."""
    tensors = _tensors(blob)
    steps, file_steps = tensors["prior_codes.steps"], tensors["prior_codes.file_steps"]
    op = rng.choice(["code", "counts", "files", "rows"])
    if op == "code":
        steps.view(-1)[rng.randrange(steps.numel())] = rng.choice([-1, 8, 9, 32767, -32768, 3])
    elif op == "counts":
        file_steps[rng.randrange(len(file_steps))] = rng.choice([-1, 0, 1, 13, 2**40, -(2**62)])
    elif op == "files":
        files = meta["prior"]["training_files"]
        if rng.random() < 0.5:
            files.append("more.wav")
        else:
            files.pop()
    else:
        rows = rng.choice([0, 1, 11, 13])
        tensors["prior_codes.steps"] = torch.zeros(rows, steps.shape[1], dtype=steps.dtype)
    return Mutant(f"prior codes: {op}", seal(meta, safetensors.torch.save(tensors)))


def _rebuilt(rng: random.Random, meta: dict, blob: bytes) -> Mutant:
    """A config value changed to a plausible one and, when the configs still hold and are
    small, weights and codes rebuilt to fit: mostly mutants that load, with odd configs."""
    path = rng.choice([p for p in _config_paths(meta) if len(p) >= 2])
    parent = _parent(meta, path)
    new = rng.choice(PLAUSIBLE + _near(parent[path[-1]]))
    parent[path[-1]] = new
    config, prior = meta["config"], meta["prior"]["config"]
    description = f"rebuilt: {'.'.join(map(str, path))} = {new!r}"
    try:
        if rng.random() < 0.8:  # keep the prior in step with the VQ-VAE, as training does
            prior["rvq_levels"], prior["codebook_size"] = (
                config["rvq_levels"],
                config["codebook_size"],
            )
            prior["context_steps"] = max(1, config["window_frames"] // config["downsample"])
        meta["prior"]["seconds_per_step"] = seconds_per_step(config)
        check_card(meta)  # only a card the schema takes gets weights to fit it
        vqvae_config, prior_config = VQVAEConfig.from_dict(config), PriorConfig.from_dict(prior)
        small = vqvae_elements(config) + prior_elements(prior) <= REBUILD_MOST_ELEMENTS
    except (ModelFileError, TypeError, ValueError, KeyError, ZeroDivisionError, AttributeError):
        return Mutant(description + " (weights kept)", seal(meta, blob))
    if not small:
        return Mutant(description + " (too big to rebuild)", seal(meta, blob))
    torch.manual_seed(rng.randrange(2**31))
    vqvae, prior_model = ConvVQVAE(vqvae_config), CodePrior(prior_config)
    tensors = {f"vqvae.{k}": v for k, v in vqvae.state_dict().items()}
    tensors |= {f"prior.{k}": v for k, v in prior_model.state_dict().items()}
    k, q = prior_config.codebook_size, prior_config.rvq_levels
    tensors["prior_codes.steps"] = torch.randint(0, k, (sum(FILE_STEPS), q), dtype=torch.int16)
    tensors["prior_codes.file_steps"] = torch.tensor(FILE_STEPS)
    return Mutant(description, seal(meta, safetensors.torch.save(tensors)))


# -- the rule --------------------------------------------------------------------------------


def outcome(path: Path, home: Path) -> str:
    """REFUSED or LOADED; anything but a ModelFileError propagates. A loaded model must run
    (a forward pass, a few generated steps, the copy check, the mel front-end and its
    inverse), and read_card, the loaders and import must agree."""
    card = _refused_or(read_card, path)
    with_prior = card is not None and card.prior is not None
    loaded = _refused_or(lambda p: _load_and_run(p, with_prior), path)
    imported = _refused_or(lambda p: import_model(p, "imported", home), path)
    if imported is not None:
        imported.unlink()
    if loaded is not None and card is None:
        raise AssertionError("loads, but read_card refused its card")
    if (loaded is None) != (imported is None):
        raise AssertionError(f"load {'refused' if loaded is None else 'accepted'} it, "
                             f"import {'refused' if imported is None else 'accepted'} it")  # fmt: skip
    return REFUSED if loaded is None else LOADED


def _refused_or(action, path: Path) -> Any:
    try:
        return action(path)
    except ModelFileError:
        return None


def _load_and_run(path: Path, with_prior: bool) -> bool:
    if with_prior:
        loaded = load_with_prior(path)
        vqvae = loaded.vqvae
        codes = generate_codes(loaded.prior, 2, [torch.Generator().manual_seed(0)])
        copy_checker(loaded).check(codes[0].numpy())
    else:
        vqvae, _ = load_vqvae(path)
    config = vqvae.config
    mel = torch.randn(1, config.mel.n_mels, config.window_frames)
    with torch.no_grad():
        out = vqvae(mel)
    if out.reconstruction.shape != mel.shape:
        raise AssertionError(
            f"reconstruction {tuple(out.reconstruction.shape)} of {tuple(mel.shape)}"
        )
    audio = torch.zeros(1, config.mel.hop_length * 3)
    MelSpectrogram(config.mel)(audio)
    mel_to_audio(out.reconstruction[0, :, :4], config.mel, n_iter=1)
    return True
