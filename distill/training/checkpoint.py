"""Resumable checkpoints, in the same pickle-free format as model files.

A checkpoint holds everything a run needs to go on as if it never stopped: the model,
the best epoch's weights, the optimizer's state, the crop sampler's RNG and torch's
global RNG (k-means and dead-code resets draw from it), the epoch to start from, the history of epoch metrics and the settings. Optimizer state is flattened to
named tensors plus JSON, so loading it never unpickles anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from distill.models.model_file import load_model_file, save_model_file

CHECKPOINT_TYPE = "distill-checkpoint"


@dataclass
class TrainingState:
    """The loop's state between epochs."""

    next_epoch: int
    model: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    sampler_rng: torch.Tensor
    global_rng: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)  # history, best epoch, config, settings


def save_checkpoint(path: Path, state: TrainingState) -> Path:
    tensors = {f"model.{k}": v for k, v in state.model.items()}
    tensors |= {f"best.{k}": v for k, v in state.best.items()}
    tensors["rng.sampler"] = state.sampler_rng
    tensors["rng.global"] = state.global_rng
    optimizer_tensors, optimizer_json = _flatten_optimizer(state.optimizer)
    tensors |= optimizer_tensors
    metadata = {
        "type": CHECKPOINT_TYPE,
        "next_epoch": state.next_epoch,
        "optimizer": optimizer_json,
        **state.info,
    }
    return save_model_file(path, tensors, metadata)


def load_checkpoint(path: Path) -> TrainingState:
    metadata, tensors = load_model_file(path)
    if metadata.get("type") != CHECKPOINT_TYPE:
        raise ValueError(f"{path} is not a training checkpoint")
    info = {k: v for k, v in metadata.items() if k not in ("type", "next_epoch", "optimizer")}
    return TrainingState(
        next_epoch=int(metadata["next_epoch"]),
        model=_with_prefix(tensors, "model."),
        best=_with_prefix(tensors, "best."),
        optimizer=_unflatten_optimizer(metadata["optimizer"], tensors),
        sampler_rng=tensors["rng.sampler"],
        global_rng=tensors["rng.global"],
        info=info,
    )


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def _flatten_optimizer(
    state_dict: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """torch optimizer state_dict -> named tensors + JSON (param groups, scalar state)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(flat: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, param_id, key = name.split(".", 2)
            state.setdefault(int(param_id), {})[key] = value
    for param_id, values in flat.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(values)
    return {"state": state, "param_groups": flat["param_groups"]}
