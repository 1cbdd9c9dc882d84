"""How to train, kept free of torch so the CLI and the server can read defaults fast."""

from __future__ import annotations

from dataclasses import dataclass


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
