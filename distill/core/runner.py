"""JobRunner: training jobs in a pool of spawned worker processes.

The runner keeps its own queue of jobs and hands one to the pool only when a slot is
free, so a worker that dies takes down one job, not everything queued behind it. Events
come back through one multiprocessing queue, drained by a thread into the event loop.

A worker killed mid-job (SIGKILL, out of memory) breaks a ProcessPoolExecutor for every
job in it; the runner reports those runs as died, builds a fresh pool and goes on. To
keep a dead worker's last events ahead of the news of its death, the news travels
through the same queue, after them.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.core.worker import CANCEL_FILE, init_worker, run_job

WORKER_DIED = "__worker_died__"  # a kind only the runner sends, never stored


@dataclass
class Job:
    run_id: str
    spec: dict[str, Any]  # plain data for distill.core.worker.run_job


OnMessage = Callable[[list[tuple[str, str, dict]]], None]  # batches of (run_id, kind, payload)
OnQueuedCancel = Callable[[str], None]


class JobRunner:
    """Runs at most `concurrency` jobs at once; the rest wait in submission order."""

    def __init__(
        self,
        on_messages: OnMessage,
        on_cancelled_while_queued: OnQueuedCancel,
        concurrency: int = 1,
    ) -> None:
        self.on_messages = on_messages
        self.on_cancelled_while_queued = on_cancelled_while_queued
        self.concurrency = concurrency
        self.threads = max(1, (os.cpu_count() or 1) // concurrency)
        self.waiting: deque[Job] = deque()
        self.running: dict[str, Future] = {}
        self._jobs: dict[str, Job] = {}  # the running jobs, by run id
        self._context = multiprocessing.get_context("spawn")
        self._queue = self._context.Queue()
        self._pool: ProcessPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._drainer: threading.Thread | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._drainer = threading.Thread(target=self._drain, name="distill-drain", daemon=True)
        self._drainer.start()

    async def stop(self) -> None:
        """Ask running jobs to stop (they checkpoint), wait for them, then shut down."""
        for job_id in list(self.running):
            self.request_cancel(job_id)
        self.waiting.clear()
        futures = list(self.running.values())
        if futures:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in futures), return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._stopping.set()
        if self._drainer is not None:
            await asyncio.to_thread(self._drainer.join)

    # -- jobs -------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        _cancel_file(job).parent.mkdir(parents=True, exist_ok=True)
        _cancel_file(job).unlink(missing_ok=True)
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
        return [p.pid for p in list(self._pool._processes.values()) if p.is_alive()]

    def is_active(self, run_id: str) -> bool:
        return run_id in self.running or any(j.run_id == run_id for j in self.waiting)

    def _fill_slots(self) -> None:
        while self.waiting and len(self.running) < self.concurrency:
            job = self.waiting.popleft()
            pool = self._ensure_pool()
            try:
                future = pool.submit(run_job, job.spec)
            except BrokenProcessPool:
                self._pool = None
                future = self._ensure_pool().submit(run_job, job.spec)
            self.running[job.run_id] = future
            self._jobs[job.run_id] = job
            future.add_done_callback(lambda f, run_id=job.run_id: self._finished(run_id, f))

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.concurrency,
                mp_context=self._context,
                initializer=init_worker,
                initargs=(self._queue, self.threads),
            )
        return self._pool

    def _finished(self, run_id: str, future: Future) -> None:
        """Runs in the pool's thread: hand over to the loop."""
        error = future.exception()
        if error is not None:
            # After the dead worker's last events, through the same queue.
            reason = _death_reason(error)
            self._queue.put((run_id, WORKER_DIED, {"error": reason}))
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._release, run_id, error)

    def _release(self, run_id: str, error: BaseException | None) -> None:
        self.running.pop(run_id, None)
        self._jobs.pop(run_id, None)
        if isinstance(error, BrokenProcessPool):
            broken, self._pool = self._pool, None
            if broken is not None:
                broken.shutdown(wait=False, cancel_futures=True)
        self._fill_slots()

    # -- events -------------------------------------------------------------------------

    def _drain(self) -> None:
        """Thread: move messages from the process queue to the loop, in batches."""
        while not self._stopping.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < 1000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self.on_messages, batch)


def _cancel_file(job: Job) -> Path:
    return Path(job.spec["run_dir"]) / CANCEL_FILE


def _death_reason(error: BaseException) -> str:
    if isinstance(error, BrokenProcessPool):
        return "the worker process died (killed, or out of memory) before the run finished"
    return f"{type(error).__name__}: {error}"
