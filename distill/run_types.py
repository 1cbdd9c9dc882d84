"""What a run type is, to the core and the runners: the contract every kind of run fits.

A run type (training/jobs.py registers distill's: the VQ-VAE, the prior, generate; tests
and benchmarks register their own) is a typed request a user sends, planned in the
core's process into a typed spec, which a worker runs. The core queues, records, follows
and cancels runs knowing nothing of any particular type; a runner ships what the spec's
`paths` name to wherever it runs (core/cluster_task.py stages them on a Dask worker).

It lives beside events.py, below every layer: the core uses it and training implements
it, and neither imports the other.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from distill.events import Payload

Emit = Callable[[Payload], None]
ShouldStop = Callable[[], bool]


def never() -> bool:
    """The stop check of a run nobody can cancel (a direct call, a benchmark)."""
    return False


class RunRefused(ValueError):
    """A request its run type will not plan: a missing model, a taken name, a dataset
    gone. The message is for the user; the core answers it as a refusal (400 or 409)."""


class PathRole(enum.Enum):
    """What a path in a spec is, for a runner that runs the spec elsewhere."""

    DATASET = "dataset"  # a folder of sounds: its audio files are shipped
    MODEL = "model"  # a model file: shipped when it exists, sent home when it changes
    OUTPUT = "output"  # a folder the run writes: its files sent home as they are written
    SCRATCH = "scratch"  # a cache the run may fill: a fresh folder where it runs


class RunSpec(Protocol):
    """A planned run, frozen, plain enough to pickle to a worker and store as JSON."""

    paths: ClassVar[Mapping[str, PathRole]]  # field name -> role, for the runners

    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self: ...

    @property
    def subject(self) -> str:
        """What the run works on, for the runs list: a dataset folder, a model."""
        ...


@dataclass(frozen=True)
class Place:
    """Where the core put a run: its data folder, id and own folder."""

    home: Path
    run_id: str
    run_dir: Path


@dataclass(frozen=True)
class RunContext:
    """What a run function is told beside its spec."""

    run_id: str
    run_dir: Path  # checkpoints, previews, the cancel file
    resume: bool = False  # go on from run_dir's checkpoint


S = TypeVar("S", bound=RunSpec)
R = TypeVar("R")


@dataclass(frozen=True)
class Plan(Generic[S]):
    spec: S
    model_name: str | None = None  # the model it makes or uses: listed with it, held by it


@dataclass(frozen=True)
class RunType(Generic[R, S]):
    """One kind of run. Its functions are module-level, so a RunType pickles by reference
    to a spawned worker or a Dask worker."""

    name: str  # stored with each run: "vqvae", "prior", "generate"
    request: type[R]
    spec: type[S]
    plan: Callable[[R, Place], Plan[S]]  # in the core's process (a thread): may refuse
    run: Callable[[S, RunContext, Emit, ShouldStop], str]  # in a worker: the outcome
    makes_model: bool = False  # two unfinished runs may not make models of one name
    # Runs of one lane queue behind each other; the "training" lane runs as many at once
    # as the core's concurrency, any other lane one, beside it: a generate request does
    # not wait for a training run to end.
    lane: str = "training"


def fields_of(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `data` that are fields of the dataclass `cls`: a stored spec also
    holds what the core adds (run id, folder, owner), and a request from outside may hold
    anything (the API refuses unknown keys before this)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}
