"""The requests and jobs of distill's run types, typed and frozen, free of torch.

A request is what a user sends (the CLI, a form, the API): names and options. Its run
type plans it (training/jobs.py, in the core's process) into a job: the same options
checked and resolved to paths, which a worker runs and the store keeps (`to_dict`, read
back by `from_dict` for a resume). A job's `paths` tell a runner that runs it on another
machine what to ship there and what to bring home.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from distill.audio.mel_config import MelConfig
from distill.inference.spec import GenerateOptions
from distill.run_types import PathRole, fields_of
from distill.training.settings import PriorSettings, TrainSettings

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


RunRequest = TrainRequest | PriorRequest | GenerateRequest  # what a user sends
