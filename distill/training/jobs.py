"""The run types distill offers the core: the VQ-VAE, the prior and generate.

Each is a RunType (distill/run_types.py): its request and job (training/specs.py), a
`plan` the core calls in its own process to check a request and resolve it to paths, and
a `run` a worker calls with the job. Whoever builds a core (the server, the CLI) hands it
RUN_TYPES; tests and benchmarks add their own. The heavy imports happen inside the
functions, so importing this module stays cheap and torch-free.
"""

from __future__ import annotations

from pathlib import Path

from distill.audio.mel_config import MelConfig
from distill.events import RunCancelled, RunCompleted, RunStarted
from distill.inference.spec import GenerateSpec
from distill.paths import mel_cache_dir, model_path
from distill.run_types import Emit, Place, Plan, RunContext, RunRefused, RunType, ShouldStop
from distill.training.settings import PriorSettings, TrainSettings
from distill.training.specs import (
    GenerateRequest,
    PriorJob,
    PriorRequest,
    TrainJob,
    TrainRequest,
)

# -- the VQ-VAE --------------------------------------------------------------------------


def plan_vqvae(request: TrainRequest, place: Place) -> Plan[TrainJob]:
    name = request.model_name or f"model-{place.run_id}"
    try:
        target = model_path(name, place.home)
        job = TrainJob(
            dataset=Path(request.dataset).expanduser().resolve(),
            model_path=target,
            cache_dir=mel_cache_dir(place.home),
            settings=TrainSettings(**request.settings),
            overrides=dict(request.overrides),
            mel=MelConfig.from_dict(dict(request.mel)),
        )
    except TypeError as error:  # a settings key that is no setting
        raise RunRefused(f"bad settings: {error}") from error
    if target.exists():
        raise RunRefused(f"a model named {name!r} already exists: {target}")
    return Plan(job, name)


def run_vqvae(job: TrainJob, context: RunContext, emit: Emit, should_stop: ShouldStop) -> str:
    from distill.training.vqvae import TrainSpec, train_vqvae

    spec = TrainSpec(
        mel=job.mel,
        dataset=job.dataset,
        run_dir=context.run_dir,
        model_path=job.model_path,
        cache_dir=job.cache_dir,
        settings=job.settings,
        overrides=dict(job.overrides),
        run_id=context.run_id,
        resume=context.resume,
    )
    return train_vqvae(spec, emit, should_stop=should_stop).status


VQVAE = RunType("vqvae", TrainRequest, TrainJob, plan_vqvae, run_vqvae, makes_model=True)


# -- the prior ---------------------------------------------------------------------------


def plan_prior(request: PriorRequest, place: Place) -> Plan[PriorJob]:
    """Reads the model's card here (not in the worker) so a missing or foreign model, or
    a dataset that is gone, is refused before anything is queued."""
    from distill.models.library import read_card, resolve_model

    path = resolve_model(request.model, place.home)
    card = read_card(path)  # raises ModelFileError (a ValueError) with the reason
    dataset = request.dataset or card.dataset.path
    if not dataset:
        raise RunRefused(f"{path.name} does not say what it was trained on: pass a DATASET")
    folder = Path(dataset).expanduser().resolve()
    if not folder.is_dir():
        raise RunRefused(f"no dataset folder at {folder}: pass the DATASET to train on")
    try:
        settings = PriorSettings(**request.settings)
    except TypeError as error:
        raise RunRefused(f"bad settings: {error}") from error
    job = PriorJob(path, folder, mel_cache_dir(place.home), settings, dict(request.overrides))
    return Plan(job, path.stem)


def run_prior(job: PriorJob, context: RunContext, emit: Emit, should_stop: ShouldStop) -> str:
    from distill.training.prior import PriorSpec, train_prior

    spec = PriorSpec(
        model_path=job.model_path,
        dataset=job.dataset,
        run_dir=context.run_dir,
        cache_dir=job.cache_dir,
        settings=job.settings,
        overrides=dict(job.overrides),
        run_id=context.run_id,
        resume=context.resume,
    )
    return train_prior(spec, emit, should_stop=should_stop).status


PRIOR = RunType("prior", PriorRequest, PriorJob, plan_prior, run_prior)


# -- generate ----------------------------------------------------------------------------


def plan_generate(request: GenerateRequest, place: Place) -> Plan[GenerateSpec]:
    """A model with a prior, and a folder of the request's own: a new one in the model's
    history, made here atomically, so requests at the same moment never share one."""
    from distill.models.history import new_out_dir
    from distill.models.library import read_card, resolve_model

    path = resolve_model(request.model, place.home)
    card = read_card(path)
    if card.prior is None:
        raise RunRefused(f"{path.stem} has no prior yet: train one first (distill train-prior)")
    options = {k: v for k, v in request.to_dict().items() if k not in ("model", "out")}
    out_dir = Path(request.out).expanduser().resolve() if request.out else None
    spec = GenerateSpec(path, out_dir or new_out_dir(path.stem, place.home), **options)
    return Plan(spec, path.stem)


def run_generate(
    spec: GenerateSpec, context: RunContext, emit: Emit, should_stop: ShouldStop
) -> str:
    """Clips one by one, each a ClipGenerated; a cancel keeps the clips written so far
    (and their history entry)."""
    from distill.inference.generate import generate_clips

    emit(RunStarted("generate", spec.subject, spec.count, 0, 0, spec.to_dict()))
    result = generate_clips(spec, emit, should_stop)
    if len(result.clips) < spec.count:
        emit(RunCancelled(epoch=len(result.clips), checkpoint_path=None))
        return "cancelled"
    emit(RunCompleted(0, 0.0, str(spec.model_path), result.wall_seconds, epochs_run=spec.count))
    return "completed"


GENERATE = RunType(
    "generate", GenerateRequest, GenerateSpec, plan_generate, run_generate, lane="generate"
)


RUN_TYPES: dict[str, RunType] = {t.name: t for t in (VQVAE, PRIOR, GENERATE)}
