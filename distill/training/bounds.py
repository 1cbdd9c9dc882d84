"""What a run's options may be: one table that the dashboard's forms, the JSON API and the
CLI's options all read, so a value one of them refuses none of the others accepts.

A value past these bounds fails late or never ends: `epochs` 0 (IndexError), `batch_size`
0 (ZeroDivisionError) or 2^40 (a terabytes allocation), `mel.sample_rate` 1e9 (gigabytes
per file), `stage_steps` 1e9 (runs until cancelled), `val_fraction` 5 or `seed` -1
(trains fully, then fails at save). Torch-free, like settings.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from distill.models.card_schema import MAX_PRIOR_HEADS, MAX_PRIOR_HIDDEN_SIZE, MAX_PRIOR_LAYERS
from distill.models.config import (
    MAX_CODEBOOK_SIZE,
    MAX_COMMITMENT_WEIGHT,
    MAX_RVQ_LEVELS,
    MIN_CODEBOOK_SIZE,
    MIN_RVQ_LEVELS,
)
from distill.training.settings import MAX_GENERATION_CLIPS

MAX_EPOCHS = 1000
MAX_STAGE_STEPS = 100_000
MAX_PATIENCE = 1000  # epochs without improvement before a run stops (0: never)
MAX_SEED = 2**31 - 1  # torch's generators take 64 bits; a seed a person types needs fewer
MAX_CLIPS = 8  # clips in one generate request, from the page or the CLI: a bound on time
# (memory no longer grows with the count: clips are drawn CLIPS_PER_BATCH at a time)
MAX_TEMPERATURE = 5.0  # sampling from the prior: generate and the editor's regenerate
DEVICES = ("auto", "cpu", "cuda")
FLAGS = ("augment",)  # options that are true or false


class BoundsError(ValueError):
    """An option out of its bounds, named as the request names it (settings.epochs)."""


@dataclass(frozen=True)
class Bound:
    low: float
    high: float
    whole: bool = True  # an integer (a JSON 1.5 or true is refused, not truncated)

    def option(self) -> dict[str, Any]:
        """min= and max= for a CLI option (typer), as ints for a whole number."""
        kind = int if self.whole else float
        return {"min": kind(self.low), "max": kind(self.high)}

    def check(self, value: Any, name: str) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = "a whole number" if self.whole else "a number"
            raise BoundsError(f"{name} must be {kind}, not {value!r}")
        if self.whole and not isinstance(value, int):
            raise BoundsError(f"{name} must be a whole number, not {value!r}")
        if not (math.isfinite(value) and self.low <= value <= self.high):  # NaN too
            raise BoundsError(f"{name} must be {self.low:g} to {self.high:g}, not {value!r}")
        return value


TRAIN_BOUNDS = {  # TrainSettings
    "epochs": Bound(1, MAX_EPOCHS),
    "batch_size": Bound(1, 1024),
    "learning_rate": Bound(1e-6, 1.0, whole=False),
    "val_fraction": Bound(0.0, 0.5, whole=False),
    "min_steps_per_epoch": Bound(1, 100_000),
    "preview_every": Bound(1, MAX_EPOCHS),
    "seed": Bound(0, MAX_SEED),
    "stage_steps": Bound(0, MAX_STAGE_STEPS),
    "patience": Bound(0, MAX_PATIENCE),
}
PRIOR_BOUNDS = {  # PriorSettings
    "epochs": Bound(1, MAX_EPOCHS),
    "batch_size": Bound(1, 1024),
    "learning_rate": Bound(1e-6, 1.0, whole=False),
    "weight_decay": Bound(0.0, 1.0, whole=False),
    "min_steps_per_epoch": Bound(1, 100_000),
    "seed": Bound(0, MAX_SEED),
    "generation_clips": Bound(1, MAX_GENERATION_CLIPS),
    "patience": Bound(0, MAX_PATIENCE),
}
MODEL_BOUNDS = {  # VQVAEConfig (None: sized from the dataset, or the default)
    "window_frames": Bound(8, 2048),
    "hidden_channels": Bound(1, 1024),
    "latent_dim": Bound(1, 1024),
    "downsample": Bound(1, 64),
    "rvq_levels": Bound(MIN_RVQ_LEVELS, MAX_RVQ_LEVELS),
    "codebook_size": Bound(MIN_CODEBOOK_SIZE, MAX_CODEBOOK_SIZE),
    "codebook_dim": Bound(1, 1024),
    "commitment_weight": Bound(0.0, MAX_COMMITMENT_WEIGHT, whole=False),
    "ema_decay": Bound(0.0, 1.0, whole=False),
    "dead_code_threshold": Bound(0.0, 1e6, whole=False),
    "kmeans_iters": Bound(0, 1000),
    "decoder_stage_channels": Bound(0, 1024),
}
MEL_BOUNDS = {  # MelConfig (f_max None: the Nyquist frequency)
    "sample_rate": Bound(1000, 192_000),
    "n_fft": Bound(16, 16_384),
    "hop_length": Bound(1, 16_384),
    "n_mels": Bound(1, 512),
    "f_min": Bound(0.0, 96_000.0, whole=False),
    "f_max": Bound(0.0, 96_000.0, whole=False),
    "log_floor": Bound(1e-12, 1.0, whole=False),
}
PRIOR_SIZE_BOUNDS = {  # PriorConfig (None: sized from the dataset)
    "context_steps": Bound(1, 4096),
    "hidden_size": Bound(8, MAX_PRIOR_HIDDEN_SIZE),
    "layers": Bound(1, MAX_PRIOR_LAYERS),
    "heads": Bound(1, MAX_PRIOR_HEADS),
    "dropout": Bound(0.0, 0.9, whole=False),
}
SAMPLING_BOUNDS = {  # Sampling, and the seed of the first clip or draw
    "temperature": Bound(0.0, MAX_TEMPERATURE, whole=False),
    "top_k": Bound(0, 1_000_000),
    "top_p": Bound(0.0, 1.0, whole=False),
    "seed": Bound(0, MAX_SEED),
    "count": Bound(1, MAX_CLIPS),
}
OPTIONAL = frozenset({"overrides", "mel"})  # sections whose fields may be None


def check_section(section: str, values: dict[str, Any], bounds: dict[str, Bound]) -> None:
    """Every value of a request's section within its bound; BoundsError naming the first
    that is not (`settings.batch_size must be 1 to 1024, not 0`). `device` is a choice."""
    for key, value in values.items():
        name = f"{section}.{key}"
        if key == "device":
            if value not in DEVICES:
                raise BoundsError(f"{name} must be one of {', '.join(DEVICES)}, not {value!r}")
        elif key in FLAGS:
            if not isinstance(value, bool):
                raise BoundsError(f"{name} must be true or false, not {value!r}")
        elif value is None and section in OPTIONAL:
            continue
        elif key in bounds:
            bounds[key].check(value, name)
        else:
            raise BoundsError(f"{name} cannot be set: it comes from the model")
