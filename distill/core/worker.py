"""What runs inside a spawned worker process: one training job, events out through a queue.

Kept apart from the runner so the core never imports torch: heavy imports happen here,
in the worker, after spawn. A job (core/runner.py's Job) is a frozen dataclass, so it
pickles across the spawn; its run type's functions travel by reference (their module is
imported here).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from distill.events import TERMINAL_KINDS, RunFailed
from distill.paths import CANCEL_FILE
from distill.threads import ThreadFit, fit_threads, fitted

if TYPE_CHECKING:
    from distill.core.runner import Job

_events = None  # the multiprocessing queue, set once per worker by `init_worker`
_orphaned = threading.Event()  # the core's process is gone: stop the job, then exit
_idle = threading.Event()  # no job is running in this worker
_idle.set()


def init_worker(events_queue, processes: int) -> None:
    """Pool initializer: keep the queue, and fit torch's threads and OpenMP's wait policy
    to the cores, shared by the `processes` torch processes distill runs at once
    (distill/threads.py), before torch is imported here.

    Workers ignore Ctrl-C: a terminal sends SIGINT to the whole process group, and a
    worker that died of it would lose the step in progress. The core asks a worker to
    stop through the run's cancel file, and the worker checkpoints first.

    A worker also outlives a core killed outright (SIGKILL) and would train on for nobody,
    and a resumed run would then have two writers: so it watches its parent and, once
    that is gone, stops its job as a cancel does (a checkpoint, for the resume) and exits.
    """
    global _events
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _events = events_queue
    threading.Thread(target=_exit_when_orphaned, name="distill-orphan", daemon=True).start()
    fit_threads(processes)


def _exit_when_orphaned() -> None:
    parent = multiprocessing.parent_process()  # spawned: its sentinel ends with it
    if parent is None:
        return
    parent.join()
    _orphaned.set()
    _idle.wait()  # the job in progress sees _orphaned at its next step and checkpoints
    os._exit(0)


def run_job(job: Job) -> str:
    """Run one job in this pool worker: events out through the queue, stop on the cancel
    file or when the core's process is gone."""
    run_id = job.run_id
    cancel_file = job.context.run_dir / CANCEL_FILE

    def should_stop() -> bool:
        return _orphaned.is_set() or cancel_file.exists()

    def send(kind: str, payload: dict[str, Any]) -> None:
        assert _events is not None, "init_worker runs first in every worker"
        _events.put((run_id, kind, payload))

    _idle.clear()
    try:
        return run_reporting(job, send, should_stop)
    finally:
        _idle.set()


Send = Callable[[str, dict[str, Any]], None]  # (kind, payload as a dict) to the core


def run_reporting(job: Job, send: Send, should_stop: Callable[[], bool]) -> str:
    """Run one job with its run type's function, wherever it runs (a pool worker, a
    cluster worker).

    Every payload goes to `send` as (kind, dict). Returns the outcome; a training error has
    already been emitted as run_failed, and any other error is, here.
    """
    ended = False

    def emit(payload) -> None:
        nonlocal ended
        ended = ended or payload.kind in TERMINAL_KINDS
        send(payload.kind, payload.to_dict())

    try:
        return job.run_type.run(job.spec, job.context, emit, should_stop)
    except Exception as error:
        if not ended:  # the loops report their own errors; this catches everything else
            emit(RunFailed(f"{type(error).__name__}: {error}"))
        return "failed"


def thread_count() -> ThreadFit:
    """For tests and reports: the threads and wait policy this worker runs torch with."""
    return fitted()
