"""The one schema for everything a run reports.

Training loops emit *payloads*: small frozen dataclasses, one per kind, each with the
kind name it travels under. The core wraps a payload in an `Event` that adds `run_id`,
`seq` and `ts`. The store, the dashboard and the CLI all read these field names, so a
quantity has exactly one name everywhere (`dead_codes`, never `dead_code_count`).

The kinds live by topic (base, runs, vqvae, prior, generation); everything is imported
from here, `from distill.events import EpochMetrics`, as before the split."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from distill.events.base import (
    RUN_STATUSES,
    TRAIN_SPLIT,
    UNFINISHED_STATUSES,
    VAL_SPLIT,
    LevelHealth,
    Payload,
)
from distill.events.generation import (
    ClipGenerated,
    CopyCheck,
)
from distill.events.prior import (
    CAUSE_COPY_RATE,
    CAUSE_GAP,
    CAUSE_VAL_PERPLEXITY,
    CodesExtracted,
    CopiesMeasured,
    GenerationMeasured,
    MemorizationWarning,
    PriorEpochMetrics,
    PriorSaved,
    PriorStepMetrics,
)
from distill.events.runs import (
    STOP_KEPT,
    STOP_PATIENCE,
    CheckpointSaved,
    DatasetScanned,
    ModelSaved,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunInterrupted,
    RunPlaced,
    RunQueued,
    RunStarted,
    SkippedFile,
)
from distill.events.vqvae import (
    CAUSE_LOW_GAIN,
    CAUSE_UTILIZATION,
    CodebookWarning,
    DecoderStageProgress,
    DecoderStageTrained,
    EpochMetrics,
    PreviewClip,
    PreviewReady,
    StepMetrics,
)

__all__ = [
    "CAUSE_COPY_RATE",
    "CAUSE_GAP",
    "CAUSE_LOW_GAIN",
    "CAUSE_UTILIZATION",
    "CAUSE_VAL_PERPLEXITY",
    "CheckpointSaved",
    "ClipGenerated",
    "CodebookWarning",
    "CodesExtracted",
    "CopiesMeasured",
    "CopyCheck",
    "DatasetScanned",
    "DecoderStageProgress",
    "DecoderStageTrained",
    "EpochMetrics",
    "Event",
    "GenerationMeasured",
    "LevelHealth",
    "MemorizationWarning",
    "ModelSaved",
    "PAYLOAD_TYPES",
    "Payload",
    "PreviewClip",
    "PreviewReady",
    "PriorEpochMetrics",
    "PriorSaved",
    "PriorStepMetrics",
    "RUN_STATUSES",
    "RunCancelled",
    "RunCompleted",
    "RunFailed",
    "RunInterrupted",
    "RunPlaced",
    "RunQueued",
    "RunStarted",
    "STEP_KINDS",
    "STOP_KEPT",
    "STOP_PATIENCE",
    "SkippedFile",
    "StepMetrics",
    "TERMINAL_KINDS",
    "TRAIN_SPLIT",
    "UNFINISHED_STATUSES",
    "VAL_SPLIT",
    "payload_from_dict",
]

PAYLOAD_TYPES: dict[str, type[Payload]] = {
    cls.kind: cls
    for cls in (
        RunQueued,
        RunStarted,
        RunPlaced,
        DatasetScanned,
        StepMetrics,
        EpochMetrics,
        CodebookWarning,
        PreviewReady,
        DecoderStageProgress,
        DecoderStageTrained,
        CheckpointSaved,
        ModelSaved,
        RunCompleted,
        RunFailed,
        RunCancelled,
        RunInterrupted,
        CodesExtracted,
        PriorStepMetrics,
        PriorEpochMetrics,
        MemorizationWarning,
        CopiesMeasured,  # runs recorded before GenerationMeasured: still read
        GenerationMeasured,
        PriorSaved,
        ClipGenerated,
    )
}
TERMINAL_KINDS = frozenset(
    {RunCompleted.kind, RunFailed.kind, RunCancelled.kind, RunInterrupted.kind}
)
# Step metrics are progress gauges: the bus may coalesce them (latest wins).
STEP_KINDS = frozenset({StepMetrics.kind, PriorStepMetrics.kind, DecoderStageProgress.kind})
_NESTED = {
    "val_levels": LevelHealth,
    "train_levels": LevelHealth,
    "files_skipped": SkippedFile,
    "clips": PreviewClip,
    "copy_check": CopyCheck,
}


def payload_from_dict(kind: str, data: dict[str, Any]) -> Payload:
    """Rebuild a typed payload from its JSON form (the inverse of `Payload.to_dict`)."""
    cls = PAYLOAD_TYPES[kind]
    data = cls.upgraded(data)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name in _NESTED:
            nested = _NESTED[f.name]
            value = nested(**value) if isinstance(value, dict) else [nested(**v) for v in value]
        values[f.name] = value
    return cls(**values)


@dataclass(frozen=True)
class Event:
    """A payload stamped with its place in one run's stream."""

    run_id: str
    seq: int  # 1, 2, 3 ... per run, no gaps
    kind: str
    payload: dict[str, Any]
    ts: float = field(default_factory=time.time)

    def typed(self) -> Payload:
        return payload_from_dict(self.kind, self.payload)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
