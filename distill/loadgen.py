"""A synthetic run that emits events at a set rate: the core's load test and benchmark.

It runs in a real worker through the real runner, bus and recorder, like a training run,
so what it measures is the core's own cost. Nine in ten events are step metrics (which
the bus may coalesce for a slow follower); every tenth is a checkpoint_saved event, a
kind that must reach every follower exactly once, so a test can check both rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from distill.events import (
    CheckpointSaved,
    Payload,
    RunCancelled,
    RunCompleted,
    RunStarted,
    StepMetrics,
)
from distill.run_types import PathRole, Place, Plan, RunContext, RunType, fields_of

TICK_SECONDS = 0.005  # events go out in small bursts, paced against the clock


def emit_load(
    rate: float, seconds: float, emit: Callable[[Payload], None], should_stop: Callable[[], bool]
) -> str:
    """Emit about `rate` events per second for `seconds`; returns the outcome like a run."""
    total = int(rate * seconds)
    emit(RunStarted("load", "(synthetic)", 1, 0, total, {"rate": rate, "seconds": seconds}))
    started = time.perf_counter()
    sent = 0
    while sent < total:
        if should_stop():
            emit(RunCancelled(epoch=0))
            return "cancelled"
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        for i in range(sent, due):
            emit(_event(i, total))
        sent = due
        time.sleep(TICK_SECONDS)
    emit(RunCompleted(0, 0.0, "", time.perf_counter() - started))
    return "completed"


def _event(i: int, total: int) -> Payload:
    if i % 10 == 9:
        return CheckpointSaved(next_epoch=i, path=f"(synthetic checkpoint {i})")
    return StepMetrics(0, i, total, loss=1.0 / (1 + i), recon_loss=1.0, commit_loss=0.0)


@dataclass(frozen=True)
class LoadRequest:
    """`rate` events per second for `seconds`."""

    rate: float
    seconds: float

    run_type: ClassVar[str] = "load"
    paths: ClassVar[Mapping[str, PathRole]] = {}  # nothing to ship: it needs no files

    @property
    def subject(self) -> str:
        return "(synthetic)"

    def to_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadRequest:
        return cls(**fields_of(cls, data))


def plan_load(request: LoadRequest, place: Place) -> Plan[LoadRequest]:
    return Plan(request)  # it is its own job


def run_load(request: LoadRequest, context: RunContext, emit, should_stop) -> str:
    return emit_load(request.rate, request.seconds, emit, should_stop)


# Not one of distill's run types: the tests and benchmarks that load the core register it.
LOAD = RunType("load", LoadRequest, LoadRequest, plan_load, run_load)
