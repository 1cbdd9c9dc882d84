"""The run types distill's training offers the core: run type -> the function that runs one.

The core runs jobs without knowing what they are: whoever builds it (the server, the
CLI) hands it RUN_TYPES. Each function runs in a spawned worker and takes the job's plain
data (a dict, so it pickles across the spawn or to a cluster), an `emit` for payloads and
a `should_stop`; it returns the outcome ("completed", "cancelled", ...). The heavy
imports happen inside, in the worker, so importing this module stays cheap and torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from distill.events import Payload

Emit = Callable[[Payload], None]
ShouldStop = Callable[[], bool]
RunFunction = Callable[[dict[str, Any], Emit, ShouldStop], str]


def train_vqvae_job(job: dict[str, Any], emit: Emit, should_stop: ShouldStop) -> str:
    from distill.training.vqvae import train_vqvae

    return train_vqvae(spec_from_job(job), emit, should_stop=should_stop).status


def train_prior_job(job: dict[str, Any], emit: Emit, should_stop: ShouldStop) -> str:
    from distill.training.prior import train_prior

    return train_prior(prior_spec_from_job(job), emit, should_stop=should_stop).status


RUN_TYPES: dict[str, RunFunction] = {"vqvae": train_vqvae_job, "prior": train_prior_job}


def spec_from_job(job: dict[str, Any]):
    """Rebuild the TrainSpec from the job's plain data."""
    from distill.audio.mel_config import MelConfig
    from distill.training.vqvae import TrainSettings, TrainSpec

    return TrainSpec(
        mel=MelConfig.from_dict(job.get("mel", {})),
        dataset=Path(job["dataset"]),
        run_dir=Path(job["run_dir"]),
        model_path=Path(job["model_path"]),
        cache_dir=Path(job["cache_dir"]),
        settings=TrainSettings(**job.get("settings", {})),
        overrides=job.get("overrides", {}),
        run_id=job["run_id"],
        resume=job.get("resume", False),
    )


def prior_spec_from_job(job: dict[str, Any]):
    """Rebuild the PriorSpec from the job's plain data."""
    from distill.training.prior import PriorSpec
    from distill.training.settings import PriorSettings

    return PriorSpec(
        model_path=Path(job["model_path"]),
        dataset=Path(job["dataset"]),
        run_dir=Path(job["run_dir"]),
        cache_dir=Path(job["cache_dir"]),
        settings=PriorSettings(**job.get("settings", {})),
        overrides=job.get("overrides", {}),
        run_id=job["run_id"],
        resume=job.get("resume", False),
    )
