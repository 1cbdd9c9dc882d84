"""What a generate request asks for (GenerateOptions) and where it goes (GenerateSpec):
the job of the generate run type, and what `generate_clips` takes. Typed, frozen and
free of torch, so a request is checked in a process that never loads a model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from distill.models.sampling_options import Sampling
from distill.run_types import PathRole, fields_of

MAX_SECONDS = 600.0  # the longest clip generate makes
GENERATE_SECONDS = 4.0  # default length of a generated clip (the CLI, the form, a spec)


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


@dataclass(frozen=True, kw_only=True)
class GenerateOptions:
    """How to generate, the same from the CLI, the form and the API. Keyword-only, so a
    request or spec names its model and folder first, positionally."""

    seconds: float = GENERATE_SECONDS  # per clip; may exceed one training window
    count: int = 1
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    seed: int = 0  # clip i uses seed + i
    griffin_lim_iters: int = 32
    one_shot: bool | None = None  # one sound per clip, `seconds` at most; None: the prior's default
    variation: bool = False  # vary the training sounds: keep one's first level, draw the rest

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and 0 < self.seconds <= MAX_SECONDS):
            raise ValueError(f"seconds must be in (0, {MAX_SECONDS:g}], got {self.seconds}")
        if self.count < 1:
            raise ValueError(f"count must be at least 1, got {self.count}")
        Sampling(self.temperature, self.top_k, self.top_p)  # refuses bad values

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.temperature, self.top_k, self.top_p)


@dataclass(frozen=True)
class GenerateSpec(GenerateOptions):
    """A planned generate request: the model file and the folder its clips go to."""

    model_path: Path
    out_dir: Path

    paths: ClassVar[Mapping[str, PathRole]] = {
        "model_path": PathRole.MODEL,
        "out_dir": PathRole.OUTPUT,
    }

    @property
    def subject(self) -> str:
        return self.model_path.stem

    @property
    def device(self) -> str:
        return "cpu"

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerateSpec:
        known = fields_of(cls, data)
        for key in ("model_path", "out_dir"):
            if key in known:
                known[key] = Path(known[key])
        return cls(**known)
