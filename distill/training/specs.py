"""The requests and jobs of distill's run types, typed and frozen, free of torch.

A request is what a user sends (the CLI, a form, the API): names and options. Its run
type plans it (training/jobs.py, in the core's process) into a job: the same options
checked and resolved to paths, which a worker runs and the store keeps (`to_dict`, read
back by `from_dict` for a resume). A job's `paths` tell a runner that runs it on another
machine what to ship there and what to bring home.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from distill.audio.mel_config import MelConfig
from distill.models.sampling_options import Sampling
from distill.run_types import PathRole, fields_of
from distill.training.settings import GENERATE_SECONDS, PriorSettings, TrainSettings

MAX_SECONDS = 600.0  # the longest clip generate makes


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


# -- the VQ-VAE --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainRequest:
    """Train a VQ-VAE on a folder of sounds."""

    dataset: str
    model_name: str | None = None  # default: model-RUN_ID
    settings: Mapping[str, Any] = field(default_factory=dict)  # TrainSettings fields
    overrides: Mapping[str, Any] = field(default_factory=dict)  # VQVAEConfig fields
    mel: Mapping[str, Any] = field(default_factory=dict)  # MelConfig fields

    run_type: ClassVar[str] = "vqvae"

    def to_dict(self) -> dict[str, Any]:
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainRequest:
        return cls(**fields_of(cls, data))


@dataclass(frozen=True)
class TrainJob:
    dataset: Path
    model_path: Path  # where the model lands in the library
    cache_dir: Path  # the mel cache
    settings: TrainSettings = field(default_factory=TrainSettings)
    overrides: Mapping[str, Any] = field(default_factory=dict)  # VQVAEConfig fields set
    mel: MelConfig = field(default_factory=MelConfig)

    paths: ClassVar[Mapping[str, PathRole]] = {
        "dataset": PathRole.DATASET,
        "model_path": PathRole.MODEL,
        "cache_dir": PathRole.SCRATCH,
    }

    @property
    def subject(self) -> str:
        return str(self.dataset)

    @property
    def device(self) -> str:
        return self.settings.device

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": str(self.dataset),
            "model_path": str(self.model_path),
            "cache_dir": str(self.cache_dir),
            "settings": asdict(self.settings),
            "overrides": dict(self.overrides),
            "mel": self.mel.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainJob:
        return cls(
            dataset=Path(data["dataset"]),
            model_path=Path(data["model_path"]),
            cache_dir=Path(data["cache_dir"]),
            settings=TrainSettings(**data.get("settings", {})),
            overrides=dict(data.get("overrides", {})),
            mel=MelConfig.from_dict(data.get("mel", {})),
        )


# -- the prior ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PriorRequest:
    """Train a prior on a model in the library."""

    model: str  # a model name in the library, or a path to a .distill file
    dataset: str | None = None  # default: the folder the model was trained on
    settings: Mapping[str, Any] = field(default_factory=dict)  # PriorSettings fields
    overrides: Mapping[str, Any] = field(default_factory=dict)  # PriorConfig fields

    run_type: ClassVar[str] = "prior"

    def to_dict(self) -> dict[str, Any]:
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriorRequest:
        return cls(**fields_of(cls, data))


@dataclass(frozen=True)
class PriorJob:
    model_path: Path  # read for the VQ-VAE, then rewritten with the prior in it
    dataset: Path
    cache_dir: Path
    settings: PriorSettings = field(default_factory=PriorSettings)
    overrides: Mapping[str, Any] = field(default_factory=dict)  # PriorConfig fields set

    paths: ClassVar[Mapping[str, PathRole]] = {
        "dataset": PathRole.DATASET,
        "model_path": PathRole.MODEL,
        "cache_dir": PathRole.SCRATCH,
    }

    @property
    def subject(self) -> str:
        return str(self.dataset)

    @property
    def device(self) -> str:
        return self.settings.device

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": str(self.dataset),
            "model_path": str(self.model_path),
            "cache_dir": str(self.cache_dir),
            "settings": asdict(self.settings),
            "overrides": dict(self.overrides),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriorJob:
        return cls(
            model_path=Path(data["model_path"]),
            dataset=Path(data["dataset"]),
            cache_dir=Path(data["cache_dir"]),
            settings=PriorSettings(**data.get("settings", {})),
            overrides=dict(data.get("overrides", {})),
        )


# -- generate ----------------------------------------------------------------------------


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

    @property
    def mode(self) -> str:
        """In words, for lists and file names."""
        shape = {None: "auto", True: "one-shot", False: "continuous"}[self.one_shot]
        return f"{shape} variation" if self.variation else shape


@dataclass(frozen=True)
class GenerateRequest(GenerateOptions):
    """New sounds from a model's prior, into its history (or `out`)."""

    model: str  # a model name in the library, or a path to a .distill file
    out: str | None = None  # a folder for the WAVs; default: a new one in the model's history

    run_type: ClassVar[str] = "generate"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerateRequest:
        return cls(**fields_of(cls, data))


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


RunRequest = TrainRequest | PriorRequest | GenerateRequest  # what a user sends
