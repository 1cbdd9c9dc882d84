"""A model's card as Python reads it: one typed class, and the old names it upgrades.

A `.distill` file's card is JSON (model_file.py) checked by card_schema.py. Everything
that reads a card (the CLI, the core, generation, the pages) reads a `ModelCard`, so a
field has one name and one type, and an optional field is None rather than a
`.get("...", {})` chain at each reader. Torch-free: listing the library stays fast.

Names a card was written with before they were made one (`upgrade_card`):
- training.final_val_loss -> best_val_loss (it always held the best epoch's value), and
  the same for the prior's final_val_loss and final_val_perplexity;
- prior.config.levels -> rvq_levels (the VQ-VAE's config calls them that).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from distill.events import (
    DecoderStageTrained,
    GenerationMeasured,
    LevelHealth,
    payload_from_dict,
)
from distill.models.config import PriorConfig, VQVAEConfig

RENAMED = {  # (section path, old name) -> today's name
    (("training",), "final_val_loss"): "best_val_loss",
    (("prior", "training"), "final_val_loss"): "best_val_loss",
    (("prior", "training"), "final_val_perplexity"): "best_val_perplexity",
    (("prior", "config"), "levels"): "rvq_levels",
}


def upgrade_card(card: dict[str, Any]) -> dict[str, Any]:
    """The card with today's names (a copy; the file is not touched). Runs before the
    schema check, so the schema and every reader know one name per field."""
    upgraded = copy.deepcopy(card)
    for (path, old), new in RENAMED.items():
        section: Any = upgraded
        for key in path:
            section = section.get(key) if isinstance(section, dict) else None
        if isinstance(section, dict) and old in section and new not in section:
            section[new] = section.pop(old)
    return upgraded


@dataclass(frozen=True)
class DatasetRecord:
    """The folder a VQ-VAE trained on, as it was then."""

    path: str
    fingerprint: str
    files: int
    seconds: float
    skipped: int = 0


@dataclass(frozen=True)
class TrainingRecord:
    epochs: int
    best_epoch: int  # 0-based; the weights kept are this epoch's
    best_val_loss: float
    val_mel_error: float | None = None  # None: trained before the mel error was measured
    val_fraction: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class PriorDatasetRecord:
    path: str
    files: int
    fingerprint: str | None = None
    train_files: int | None = None
    val_files: int | None = None
    median_seconds: float | None = None
    one_shot: bool = False  # short sounds: generation defaults to one-shot clips


@dataclass(frozen=True)
class MemorizationNote:
    epoch: int
    message: str


@dataclass(frozen=True)
class PriorTrainingRecord:
    epochs: int
    best_epoch: int
    best_val_perplexity: float
    memorization_threshold: float
    best_val_loss: float | None = None
    copy_rate: float | None = None  # written before `generation` existed: replayed code runs
    memorization_warnings: tuple[MemorizationNote, ...] = ()
    generation: GenerationMeasured | None = None  # clips generated after training, measured


@dataclass(frozen=True)
class PriorCard:
    config: PriorConfig
    dataset: PriorDatasetRecord
    training_files: tuple[str, ...]
    seconds_per_step: float
    curves: dict[str, list[float]]
    training: PriorTrainingRecord
    run_id: str | None = None
    created: str | None = None

    @classmethod
    def from_dict(cls, prior: dict[str, Any]) -> PriorCard:
        training = dict(prior["training"])
        warnings = training.pop("memorization_warnings", [])
        figures = training.pop("generation", None)
        generation = payload_from_dict(GenerationMeasured.kind, figures) if figures else None
        assert generation is None or isinstance(generation, GenerationMeasured)
        return cls(
            config=PriorConfig.from_dict(prior["config"]),
            dataset=PriorDatasetRecord(**_known(PriorDatasetRecord, prior["dataset"])),
            training_files=tuple(prior["training_files"]),
            seconds_per_step=prior["seconds_per_step"],
            curves=prior["curves"],
            training=PriorTrainingRecord(
                **_known(PriorTrainingRecord, training),
                memorization_warnings=tuple(
                    MemorizationNote(w["epoch"], w["message"]) for w in warnings
                ),
                generation=generation,
            ),
            run_id=prior.get("run_id"),
            created=prior.get("created"),
        )


@dataclass(frozen=True)
class ModelCard:
    """What a model file says about its model; built from a card the schema accepted."""

    name: str
    config: VQVAEConfig
    dataset: DatasetRecord
    training: TrainingRecord
    health: tuple[LevelHealth, ...]  # per level, at the best epoch, on held-out files
    curves: dict[str, list[float]]  # per epoch: train_loss, val_loss, val_commit_loss, ...
    created: str | None = None
    run_id: str | None = None
    prior: PriorCard | None = None
    decoder_stage: DecoderStageTrained | None = None  # how its decoder stage trained
    trained_before_stage: bool = False  # written before the decoder stage existed

    @classmethod
    def from_dict(cls, card: dict[str, Any], name: str = "") -> ModelCard:
        """`card`: upgraded and checked (library.read_card does both); `name`: the file's
        stem, for a card that does not name its model."""
        stage = card.get("decoder_stage")
        trained = payload_from_dict(DecoderStageTrained.kind, stage) if stage else None
        assert trained is None or isinstance(trained, DecoderStageTrained)  # its kind's class
        return cls(
            name=card.get("name") or name,
            config=VQVAEConfig.from_dict(card["config"]),
            dataset=DatasetRecord(**_known(DatasetRecord, card["dataset"])),
            training=TrainingRecord(**_known(TrainingRecord, card["training"])),
            health=tuple(LevelHealth(**h) for h in card["health"]),
            curves=card["curves"],
            created=card.get("created"),
            run_id=card.get("run_id"),
            prior=PriorCard.from_dict(card["prior"]) if "prior" in card else None,
            decoder_stage=trained,
            trained_before_stage="decoder_stage_channels" not in card["config"],
        )

    @property
    def worst_utilization(self) -> float:
        return min((h.utilization for h in self.health), default=0.0)

    def listening(self) -> str:
        """How the model's sounds are rendered, in words for its card (CLI and dashboard)."""
        stage = self.decoder_stage
        if self.config.decoder_stage_channels and stage is not None:
            if not stage.helped:
                return (
                    "through its decoder stage, kept as the mel's pseudo-inverse it started "
                    "as: training it did not bring the held-out sounds closer"
                )
            return (
                f"through its decoder stage (held-out sounds: magnitude spectral convergence "
                f"{stage.val_convergence_baseline:.3f} with the mel's pseudo-inverse, "
                f"{stage.val_convergence:.3f} through the stage)"
            )
        if self.trained_before_stage:
            return (
                "through Griffin-Lim: trained before the decoder stage existed; "
                "retrain it to hear it through one"
            )
        return "through Griffin-Lim: trained without a decoder stage (--stage-steps 0)"


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The fields of `data` that `cls` has: a card may carry more (the schema allows it)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}
