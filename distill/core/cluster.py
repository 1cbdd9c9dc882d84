"""ClusterRunner: the runner's jobs as tasks on a Dask distributed cluster.

It stands where the local JobRunner does (core.Core picks one) and keeps the same
contract: events reach the core in order, where they get their seq, are stored and then
published. Only this module and the task it submits (core/cluster_task.py) import Dask,
and only a core given a cluster imports them.

One run attempt is one task. Its inputs travel with it (scattered once: the dataset's
files, the model of a prior, the checkpoint of a resume), its events and output files
come back through a Dask Queue named for the attempt, and this side writes the files into
the run's folder before handing the event that names them to the core. So no filesystem
is shared, and a checkpoint is home after every epoch: a run resumes on any worker.

Faults: a worker that leaves mid-run (killed, its machine gone) fails the run with the
worker named, once its last messages are delivered; a scheduler that stops answering
interrupts every run in flight, and the server says so and keeps serving. A cancel sets
the attempt's Dask Event, which the task watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from distill.core.cluster_config import ClusterConfig, ClusterError
from distill.core.cluster_task import END, ENDED, EVENT, HELLO, LOST, run_on_cluster
from distill.core.runner import RUNNER_LOST, WORKER_DIED, Job, OnMessages, OnQueuedCancel
from distill.core.shipping import make_bundle, resources_for, write_home
from distill.events import RunPlaced

WATCH_EVERY = 0.5  # s: how often the scheduler is asked which workers it has
SCHEDULER_GRACE = 5.0  # s of unanswered questions before the scheduler counts as gone
STOP_WAIT = 60.0  # s: at shutdown, how long running tasks get to checkpoint and report


def lost_reason(worker: str) -> str:
    return f"the cluster worker {worker} was lost (killed, or its machine went away) before the run finished"


@dataclass
class Attempt:
    """One run attempt on the cluster, from submission to its last message."""

    job: Job
    names: dict[str, str]  # its Dask Queue and Events, by role
    future: Any = None  # the Dask future of its task
    worker: str | None = None  # the worker's address, once it started there
    lost: str | None = None  # why it ended without its end message
    ended: bool = False
    driver: asyncio.Task | None = field(default=None, repr=False)


@dataclass(frozen=True)
class WorkerInfo:
    """One worker as the home page lists it."""

    address: str
    name: str
    threads: int
    memory_bytes: int
    gpus: float  # its "GPU" resource (0: none declared)
    busy: int  # tasks executing on it now


class ClusterRunner:
    def __init__(
        self,
        config: ClusterConfig,
        on_messages: OnMessages,
        on_cancelled_while_queued: OnQueuedCancel,
    ) -> None:
        self.config = config
        self.on_messages = on_messages
        self.on_cancelled_while_queued = on_cancelled_while_queued
        self.waiting: deque[Job] = deque()  # never used: the scheduler queues the tasks
        self.running: dict[str, Attempt] = {}  # attempts not ended, by run id
        self.lost: str | None = None  # why the cluster cannot be used any more
        self._client: Any = None
        self._watcher: asyncio.Task | None = None
        self._workers: dict[str, dict[str, Any]] = {}  # the scheduler's last word on them

    # -- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect; an unreachable scheduler is a ClusterError saying where and why."""
        from distributed import Client

        client = Client(
            self.config.address,
            asynchronous=True,
            security=self._security(),
            timeout=self.config.connect_timeout,
            set_as_default=False,
        )

        async def connect() -> dict[str, Any]:
            self._client = await client
            return (await self._client.scheduler.identity())["workers"]

        try:  # bounded as a whole: an address that accepts and never answers hung 300 s
            self._workers = await asyncio.wait_for(connect(), self.config.connect_timeout + 5)
        except Exception as error:  # noqa: BLE001 - refused, timed out, or not Dask at all
            self._client = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 5)
            if isinstance(error, TimeoutError):
                error = TimeoutError(f"no answer in {self.config.connect_timeout + 5:g} s")
            hint = ""
            if self.config.uses_tls and not self.config.tls_cert:
                hint = (
                    " (a tls:// scheduler needs certificates: --tls-ca-file, --tls-cert and"
                    " --tls-key, or Dask's distributed.comm.tls settings)"
                )
            raise ClusterError(
                f"cannot reach the Dask scheduler at {self.config.address}:"
                f" {type(error).__name__}: {error}{hint}"
            ) from error
        self._watcher = asyncio.ensure_future(self._watch())

    def _security(self):
        from distributed import Security

        if self.config.tls_ca_file or self.config.tls_cert:
            return Security(
                tls_ca_file=self.config.tls_ca_file,
                tls_client_cert=self.config.tls_cert,
                tls_client_key=self.config.tls_key,
                require_encryption=True,
            )
        return Security()  # Dask's own config: its distributed.comm.tls section

    async def stop(self) -> None:
        """Ask running tasks to stop (they checkpoint and report), then disconnect."""
        for run_id in list(self.running):
            self.request_cancel(run_id)
        drivers = [a.driver for a in self.running.values() if a.driver is not None]
        if drivers and self.lost is None:
            await asyncio.wait(drivers, timeout=STOP_WAIT)
        for driver in drivers:
            driver.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        if self._client is not None:
            with contextlib.suppress(Exception):  # a scheduler already gone
                await self._client.close(timeout=5)

    def unavailable(self) -> str | None:
        """Why a new run cannot be submitted, or None."""
        return self.lost

    def workers(self) -> list[WorkerInfo]:
        """The cluster's workers as the scheduler last listed them (every WATCH_EVERY)."""
        return [
            WorkerInfo(
                address=address,
                name=str(info.get("name", address)),
                threads=int(info.get("nthreads", 0)),
                memory_bytes=int(info.get("memory_limit") or 0),
                gpus=float((info.get("resources") or {}).get("GPU", 0)),
                busy=int((info.get("metrics") or {}).get("task_counts", {}).get("executing", 0)),
            )
            for address, info in sorted(self._workers.items())
        ]

    # -- jobs ---------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        token = f"{job.run_id}-{secrets.token_hex(4)}"
        roles = ("task", "data", "queue", "cancel", "started")
        names = {role: f"distill-{role}-{token}" for role in roles}
        attempt = Attempt(job, names)
        self.running[job.run_id] = attempt
        attempt.driver = asyncio.ensure_future(self._drive(attempt))

    def cancel(self, run_id: str) -> bool:
        """Cancel a task not started yet now, or ask a running one to stop."""
        attempt = self.running.get(run_id)
        if attempt is None:
            return False
        if attempt.worker is None:  # still waiting for a worker (or being shipped)
            self.request_cancel(run_id, attempt)
            asyncio.ensure_future(self._mark_ended(attempt, "cancelled"))  # frees its drain
            self._end(attempt)
            if attempt.future is not None:
                asyncio.ensure_future(attempt.future.cancel())
            self.on_cancelled_while_queued(run_id)
            return True
        self.request_cancel(run_id)
        return True

    def request_cancel(self, run_id: str, attempt: Attempt | None = None) -> None:
        attempt = attempt or self.running.get(run_id)
        if attempt is not None and self._client is not None and self.lost is None:
            from distributed import Event

            asyncio.ensure_future(Event(attempt.names["cancel"], client=self._client).set())

    def is_active(self, run_id: str) -> bool:
        return run_id in self.running

    def _end(self, attempt: Attempt) -> None:
        attempt.ended = True
        if self.running.get(attempt.job.run_id) is attempt:
            del self.running[attempt.job.run_id]

    async def _drive(self, attempt: Attempt) -> None:
        """Ship the attempt, submit its task, and deliver its messages until its end."""
        from distributed import Queue

        job = attempt.job
        try:
            bundle = await asyncio.to_thread(make_bundle, job)
            if attempt.ended:
                return  # cancelled while its data was read
            await self._share(attempt.names["data"], bundle)
            del bundle
            attempt.future = self._client.submit(
                run_on_cluster, job, attempt.names,
                key=attempt.names["task"], pure=False, resources=resources_for(job),
            )  # fmt: skip
            queue = await Queue(attempt.names["queue"], client=self._client)
            await self._drain(attempt, queue)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - whatever the cluster said, the run hears
            if not attempt.ended and self.lost is None:
                self._end(attempt)
                reason = f"the cluster could not run it: {type(error).__name__}: {error}"
                self.on_messages([(job.run_id, WORKER_DIED, {"error": reason})])
        finally:
            if self.lost is None:
                await self._unshare(attempt.names["data"])

    async def _unshare(self, name: str) -> None:
        from distributed import Variable

        with contextlib.suppress(Exception):  # the scheduler may be going away
            await Variable(name, client=self._client).delete()

    async def _share(self, name: str, value: Any) -> None:
        """Scatter `value` to a worker and name it by a Dask Variable, which the task reads.

        Not an argument of the task: a task with data is placed where its data is, and
        every run would queue on the worker that got its bundle. Without, the scheduler
        hands it to the next free worker, which fetches the data when it starts. The
        Variable keeps the data alive until `_unshare`."""
        from distributed import Variable

        [data] = await self._client.scatter([value], hash=False)
        await Variable(name, client=self._client).set(data)

    async def _drain(self, attempt: Attempt, queue) -> None:
        """Deliver the attempt's messages until its end: the task's END, or the ENDED mark
        this side puts in the same queue when the task cannot send one (its worker left,
        it failed outside the run, it was turned away), behind all it did send."""
        watching = asyncio.ensure_future(self._watch_task(attempt))
        try:
            while not attempt.ended:
                try:
                    batch = await queue.get()
                except OSError:  # the scheduler is unreachable: the watcher decides
                    if self.lost is not None:
                        return
                    await asyncio.sleep(WATCH_EVERY)
                    continue
                await self._deliver(attempt, batch)
        finally:
            watching.cancel()

    async def _watch_task(self, attempt: Attempt) -> None:
        """When the task ends without having ended the attempt, say why in its queue."""
        try:
            outcome = await attempt.future
            reason = lost_reason(attempt.worker or "that ran it") if outcome == LOST else None
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - the task's own failure, for the run
            reason = f"the task failed on the cluster: {type(error).__name__}: {error}"
        if reason is not None and not attempt.ended:
            await self._mark_ended(attempt, reason)

    async def _mark_ended(self, attempt: Attempt, reason: str) -> None:
        from distributed import Queue

        if self.lost is not None:
            return
        with contextlib.suppress(Exception):  # the scheduler going away: its watcher knows
            await Queue(attempt.names["queue"], client=self._client).put(
                [{"type": ENDED, "reason": reason}]
            )

    async def _deliver(self, attempt: Attempt, batch: list[dict[str, Any]]) -> None:
        """Write the files of a batch of messages home, then hand the core its events."""
        if attempt.ended:
            return
        files = [item for message in batch for item in message.get("files", ())]
        if files:
            await asyncio.to_thread(write_home, attempt.job, files)
        events: list[tuple[str, str, dict]] = []
        for message in batch:
            if message["type"] == HELLO:
                attempt.worker = message["worker"]
                placed = RunPlaced(worker=message["worker"], name=message["name"])
                events.append((attempt.job.run_id, placed.kind, placed.to_dict()))
            elif message["type"] == EVENT:
                events.append((attempt.job.run_id, message["kind"], message["payload"]))
            elif message["type"] == END:
                self._end(attempt)
            elif message["type"] == ENDED:
                self._end(attempt)
                events.append((attempt.job.run_id, WORKER_DIED, {"error": message["reason"]}))
        self.on_messages(events)

    # -- the scheduler ------------------------------------------------------------------

    async def _watch(self) -> None:
        """Every WATCH_EVERY: which workers are there. A worker that left takes its
        attempts with it; a scheduler silent for SCHEDULER_GRACE takes them all."""
        silent_since: float | None = None
        while self.lost is None:
            await asyncio.sleep(WATCH_EVERY)
            try:
                identity = await asyncio.wait_for(
                    self._client.scheduler.identity(), timeout=WATCH_EVERY * 4
                )
            except (OSError, TimeoutError) as error:
                silent_since = silent_since or time.monotonic()
                if time.monotonic() - silent_since >= SCHEDULER_GRACE:
                    self._scheduler_lost(error)
                continue
            silent_since = None
            self._workers = identity["workers"]
            for attempt in list(self.running.values()):
                if attempt.worker is not None and attempt.worker not in self._workers:
                    if attempt.lost is None:
                        attempt.lost = lost_reason(attempt.worker)
                        await self._mark_ended(attempt, attempt.lost)

    def _scheduler_lost(self, error: BaseException) -> None:
        self.lost = (
            f"the Dask scheduler at {self.config.address} stopped answering at"
            f" {time.strftime('%H:%M:%S')} ({type(error).__name__}): new runs cannot start"
        )
        self._workers = {}
        for attempt in list(self.running.values()):
            self._end(attempt)
            if attempt.driver is not None:
                attempt.driver.cancel()
            self.on_messages([(attempt.job.run_id, RUNNER_LOST, {"reason": self.lost})])


def check_reachable(config: ClusterConfig) -> None:
    """Connect once and let go: a ClusterError saying where and why when it cannot."""

    async def connect() -> None:
        runner = ClusterRunner(config, lambda batch: None, lambda run_id: None)
        try:
            await runner.start()
        finally:
            await runner.stop()

    asyncio.run(connect())
