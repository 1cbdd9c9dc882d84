"""How to train, kept free of torch so the CLI and the server can read defaults fast."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TrainSettings:
    """How to train, as opposed to what to build (VQVAEConfig)."""

    epochs: int = 30
    batch_size: int = 16
    learning_rate: float = 1e-3
    val_fraction: float = 0.15  # share of files held out for validation (at least one)
    min_steps_per_epoch: int = 32  # small sets still get enough steps per epoch to learn
    preview_every: int = 5  # epochs between reconstruction previews (and always the last)
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when there is one), "cpu" or "cuda"
    stage_steps: int = 600  # decoder stage steps after the epochs (training/stage.py); 0: none
    augment: bool = True  # pitch-shifted takes (small sets) and sounds after silence or others
    # Stop when the validation loss has not improved for this many epochs; 0: off. The
    # VQ-VAE improves slowly but long, so it is given more time than a prior.
    patience: int = 10


MAX_GENERATION_CLIPS = 500  # clips a prior run may generate to measure itself


@dataclass(frozen=True)
class PriorSettings:
    """How to train a prior, as opposed to what to build (PriorConfig).

    The split into training and validation files is not here: a prior uses the split
    (val_fraction, seed) its VQ-VAE was trained with, so its validation files are sounds
    neither model ever trained on.
    """

    epochs: int = 30
    batch_size: int = 16
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    min_steps_per_epoch: int = 32  # small sets still get enough steps per epoch to learn
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when there is one), "cpu" or "cuda"
    augment: bool = True  # also learn the codes of each file's pitch-shifted takes (small sets)
    generation_clips: int = 40  # generated and measured after training (GenerationMeasured)
    # Stop when the validation perplexity has not improved for this many epochs; 0: off.
    # On a small set a prior starts replaying its training sounds after a few epochs and
    # validation only gets worse from there.
    patience: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.generation_clips <= MAX_GENERATION_CLIPS:
            raise ValueError(
                f"generation_clips must be from 1 to {MAX_GENERATION_CLIPS}, "
                f"got {self.generation_clips}"
            )


def steps_per_epoch(settings: TrainSettings | PriorSettings, natural_windows: int) -> int:
    """Enough batches to see the training windows once; small sets get a floor of steps."""
    return max(settings.min_steps_per_epoch, math.ceil(natural_windows / settings.batch_size))


def training_device(name: str) -> torch.device:
    """ "auto" picks CUDA when there is one; asking for CUDA without one is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA device here")
    return torch.device(name)
