"""JobRunner: training jobs in a pool of spawned worker processes.

The runner keeps its own queue of jobs and hands one to the pool only when a slot is
free, so a worker that dies takes down one job, not everything queued behind it. Events
come back through a multiprocessing queue, drained by a thread into the event loop.

A worker killed mid-job (SIGKILL, out of memory) breaks a ProcessPoolExecutor, and may
die holding the queue's shared write lock. So each pool gets its own queue (a
"channel"); a broken pool's channel is drained of what the dead worker did send, then
retired, and only after that is the run reported dead: its last events stay ahead of
the news of its death. The parent never writes to a channel, so it can never block on a
lock a dead worker left held.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from distill.core.worker import init_worker, run_job
from distill.paths import CANCEL_FILE, KEEP_BEST_FILE
from distill.run_types import RunContext, RunSpec, RunType
from distill.threads import torch_processes

WORKER_DIED = "__worker_died__"  # kinds only a runner sends, never stored: the run failed,
RUNNER_LOST = "__runner_lost__"  # or the runner cannot reach its workers any more
DEATH_REASON = "the worker process died (killed, or out of memory) before the run finished"


@dataclass(frozen=True)
class Job:
    """One run attempt, as a runner hands it to a worker (pickled: its run type's
    functions travel by reference)."""

    run_id: str
    run_type: RunType
    spec: RunSpec  # the run type's job, as its plan made it
    context: RunContext  # its folder, and whether it resumes

    @property
    def lane(self) -> str:
        return self.run_type.lane


OnMessages = Callable[[list[tuple[str, str, dict]]], None]  # batches of (run_id, kind, payload)
OnQueuedCancel = Callable[[str], None]


class Runner(Protocol):
    """What the core asks of whatever runs its jobs: the local pool (JobRunner) or a Dask
    cluster (core/cluster.py's ClusterRunner, which can also list its workers)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def unavailable(self) -> str | None:
        """Why a new run cannot be submitted now, or None."""
        ...

    def submit(self, job: Job) -> None: ...

    def cancel(self, run_id: str) -> bool:
        """Cancel a queued job now, or ask a running one to stop; False if unknown here."""
        ...

    def is_active(self, run_id: str) -> bool: ...


class Channel:
    """One pool's event queue and the thread that moves its messages to the loop."""

    def __init__(self, context, loop: asyncio.AbstractEventLoop, deliver: OnMessages) -> None:
        self.queue = context.Queue()
        self._loop, self._deliver = loop, deliver
        self._retiring = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="distill-drain", daemon=True)
        self._thread.start()

    async def retire(self) -> None:
        """Deliver what is already in the queue, then stop the thread and drop the queue."""
        self._retiring.set()
        await asyncio.to_thread(self._thread.join)
        self.queue.close()
        self.queue.cancel_join_thread()  # never wait on a feeder at exit

    def _drain(self) -> None:
        while True:
            try:
                batch = [self.queue.get(timeout=0.1)]
            except queue.Empty:
                if self._retiring.is_set():
                    return
                continue
            except (EOFError, OSError):
                return
            while len(batch) < 1000:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            self._loop.call_soon_threadsafe(self._deliver, batch)


TRAINING_LANE = "training"  # the lane that runs `concurrency` jobs at once


class JobRunner:
    """Runs at most `concurrency` training jobs at once, and one job of each other lane
    beside them (a generate request); the rest wait in submission order."""

    def __init__(
        self,
        on_messages: OnMessages,
        on_cancelled_while_queued: OnQueuedCancel,
        concurrency: int = 1,
        lanes: Iterable[str] = (),
    ) -> None:
        """`lanes`: the lanes of the run types this runner will be given."""
        self.on_messages = on_messages
        self.on_cancelled_while_queued = on_cancelled_while_queued
        self.concurrency = concurrency
        self.lanes = {TRAINING_LANE: concurrency} | {
            lane: 1 for lane in lanes if lane != TRAINING_LANE
        }
        self.torch_processes = torch_processes(concurrency)
        self.waiting: deque[Job] = deque()
        self.running: dict[str, Future] = {}
        self._jobs: dict[str, Job] = {}  # the running jobs, by run id
        self._channel_of: dict[str, Channel] = {}  # the channel each running job talks on
        self._context = multiprocessing.get_context("spawn")
        self._pool: ProcessPoolExecutor | None = None
        self._channel: Channel | None = None
        self._retiring: dict[int, asyncio.Task] = {}  # id(channel) -> its retirement
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    def unavailable(self) -> str | None:
        """Why a new run cannot be submitted (a local pool always can)."""
        return None

    async def stop(self) -> None:
        """Ask running jobs to stop (they checkpoint), wait for them, then shut down."""
        for run_id in list(self.running):
            self.request_cancel(run_id)
        self.waiting.clear()
        futures = list(self.running.values())
        if futures:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in futures), return_exceptions=True)
        pool, channel, self._pool, self._channel = self._pool, self._channel, None, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, True)
        if channel is not None:
            await channel.retire()
        await asyncio.gather(*self._retiring.values(), return_exceptions=True)
        # Drop every reference to the queues: their semaphores are unlinked when the
        # objects are freed, and on SIGTERM the process ends (uvicorn re-raises the
        # signal) before multiprocessing's exit hooks would, so the resource tracker
        # would warn of leaked semaphores. A retirement task holds its channel too.
        self._retiring.clear()
        del pool, channel

    # -- jobs -------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        _cancel_file(job).parent.mkdir(parents=True, exist_ok=True)
        _cancel_file(job).unlink(missing_ok=True)
        (_cancel_file(job).parent / KEEP_BEST_FILE).unlink(missing_ok=True)
        self.waiting.append(job)
        self._fill_slots()

    def cancel(self, run_id: str) -> bool:
        """Cancel a queued job now, or ask a running one to stop; False if unknown here."""
        for job in self.waiting:
            if job.run_id == run_id:
                self.waiting.remove(job)
                self.on_cancelled_while_queued(run_id)
                return True
        if run_id in self.running:
            self.request_cancel(run_id)
            return True
        return False

    def request_cancel(self, run_id: str) -> None:
        job = self._jobs.get(run_id)
        if job is not None:
            _cancel_file(job).touch()

    def worker_pids(self) -> list[int]:
        """The live worker processes (ProcessPoolExecutor keeps them in `_processes`)."""
        if self._pool is None:
            return []
        processes = list(self._pool._processes.values())
        return [p.pid for p in processes if p.is_alive() and p.pid is not None]

    def is_active(self, run_id: str) -> bool:
        return run_id in self.running or any(j.run_id == run_id for j in self.waiting)

    def _fill_slots(self) -> None:
        """Start each waiting job whose lane has a free slot, oldest first."""
        busy = Counter(job.lane for job in self._jobs.values())
        for job in list(self.waiting):
            if busy[job.lane] >= self.lanes.get(job.lane, 1):
                continue
            self.waiting.remove(job)
            busy[job.lane] += 1
            pool, channel = self._ensure_pool()
            future = pool.submit(run_job, job)
            self.running[job.run_id] = future
            self._jobs[job.run_id] = job
            self._channel_of[job.run_id] = channel
            future.add_done_callback(functools.partial(self._finished, job.run_id))

    def _ensure_pool(self) -> tuple[ProcessPoolExecutor, Channel]:
        if self._pool is None:
            assert self._loop is not None, "start() the runner inside the event loop first"
            self._channel = Channel(self._context, self._loop, self.on_messages)
            self._pool = ProcessPoolExecutor(
                max_workers=sum(self.lanes.values()),
                mp_context=self._context,
                initializer=init_worker,
                initargs=(self._channel.queue, self.torch_processes),
            )
        assert self._channel is not None  # made and dropped together with the pool
        return self._pool, self._channel

    def _finished(self, run_id: str, future: Future) -> None:
        """Runs in the pool's thread: hand over to the loop."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._release, run_id, future.exception())

    def _release(self, run_id: str, error: BaseException | None) -> None:
        self.running.pop(run_id, None)
        self._jobs.pop(run_id, None)
        channel = self._channel_of.pop(run_id, None)
        if error is None:
            self._fill_slots()
            return
        if isinstance(error, BrokenProcessPool) and channel is self._channel:
            broken, self._pool, self._channel = self._pool, None, None
            if broken is not None:
                broken.shutdown(wait=False, cancel_futures=True)
        retirement = None
        if isinstance(error, BrokenProcessPool) and channel is not None:
            retirement = self._retiring.get(id(channel))
            if retirement is None:
                retirement = asyncio.ensure_future(channel.retire())
                self._retiring[id(channel)] = retirement
        reason = DEATH_REASON if isinstance(error, BrokenProcessPool) else repr(error)
        asyncio.ensure_future(self._report_death(run_id, reason, retirement))

    async def _report_death(
        self, run_id: str, reason: str, retirement: asyncio.Future | None
    ) -> None:
        if retirement is not None:
            await asyncio.shield(retirement)  # the dead worker's last events go first
        self.on_messages([(run_id, WORKER_DIED, {"error": reason})])
        self._fill_slots()


def _cancel_file(job: Job) -> Path:
    return job.context.run_dir / CANCEL_FILE
