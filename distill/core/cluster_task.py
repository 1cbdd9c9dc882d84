"""What runs on a Dask worker: one job in a folder of its own, its events and files sent home.

The server's ClusterRunner (core/cluster.py) ships what a job reads with the task (no
shared filesystem is assumed): the dataset's files, with their modification times so
that the dataset's fingerprint is the one it has at home; the model file of a prior; the
checkpoint of a resumed run. Here they are unpacked into a staging folder under the
worker's local directory, the job's paths point there, and the run function runs as it
would in a pool worker (worker.run_reporting).

What the job writes comes home with its events. Before each event (step gauges aside),
the staged files that changed since the last event (checkpoints, previews, the model)
travel in the same message, ahead of the event that names them: the server writes them
into the run's own folder first, so an event it publishes names a file that is there.
Absolute paths in payloads, in a saved model's card and in JSON files are mapped back to
the server's paths. Messages go in order through one Dask Queue per attempt, put by a
sender thread, each put carrying what was emitted while the last one was on its way; the
last message says the stream ended, and how.

A cancel arrives as a Dask Event. A task whose key was released (the server's client is
gone) stops the same way, with a checkpoint. A task the scheduler starts a second time,
after the worker that ran it was lost, returns at once: the server has reported that
attempt failed, and a resume is a new attempt.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from distill.core.runner import Job
from distill.core.worker import run_reporting
from distill.events import STEP_KINDS
from distill.paths import CANCEL_FILE
from distill.run_types import PathRole
from distill.threads import fit_threads

HELLO, EVENT, END = "hello", "event", "end"  # message types from a task
ENDED = "ended"  # put by the server for a task that cannot send its END (ClusterRunner)
# Where a file sent home goes (its key's head): the run's folder, a model file of the job,
# or an output folder of the job.
RUN_FOLDER, MODEL_FILE, OUTPUT_FOLDER = "run", "model", "output"
LOST = "lost"  # the outcome of a second start: this attempt was reported lost already
WATCH_EVERY = 0.25  # s: how often the stop watcher asks about a cancel

# What a task carries: {"folders": {field: [[rel, bytes, mtime_ns]]}, "files": {field:
# bytes}, "run": [[rel, bytes]]}: a dataset's sounds, a model file, a resume's checkpoint.
Bundle = dict[str, Any]


def run_on_cluster(job: Job, names: dict[str, str]) -> str:
    """The task: run `job` (its paths the server's) on staged copies of what it reads."""
    from distributed import Event, Queue, get_worker

    worker = get_worker()
    if not _first_start(Event(names["started"])):
        return LOST
    bundle = _shared(names["data"])
    root = Path(tempfile.mkdtemp(prefix=f"distill-{job.run_id}-", dir=worker.local_directory))
    staging = Staging(root, job, bundle)
    sender = Sender(Queue(names["queue"]))
    sender.send({"type": HELLO, "worker": worker.address, "name": str(worker.name)})
    watcher = StopWatcher(Event(names["cancel"]), worker, _current_key(worker))
    _share_cores(worker)
    outcome = "failed"
    try:
        outcome = run_reporting(staging.job, staging.sending(sender), watcher.stopping)
        return outcome
    finally:
        watcher.close()
        sender.close({"type": END, "outcome": outcome, "files": staging.changed_files()})
        shutil.rmtree(root, ignore_errors=True)


class Staging:
    """The worker's copy of a job's paths, and the map from its paths to the server's.

    What the job's `paths` name (distill/run_types.py) decides what is staged: a dataset
    folder is unpacked from the bundle, a model file too when it was shipped, an output
    folder and a scratch folder start empty; the run's own folder gets the checkpoint
    of a resume. `job` is the job again, pointing at the staged copies."""

    def __init__(self, root: Path, job: Job, bundle: Bundle) -> None:
        self.run_dir = root / RUN_FOLDER
        self._home: list[tuple[str, str]] = []  # (staged prefix, home prefix)
        self._stamps: dict[str, tuple[int, int] | None] = {}  # key -> (size, mtime_ns) sent
        self._outputs_by_key: dict[str, Path] = {}  # key prefix -> a staged output folder
        self._models: dict[str, Path] = {}  # key -> a staged model file
        self._stage_folder(root / "relabel")  # where a model is relabelled for home
        self._stage_folder(self.run_dir)
        self._home.append((str(self.run_dir), str(job.context.run_dir)))
        for rel, data in bundle.get("run", []):
            self._write(self.run_dir / rel, data)
            self._stamps[f"{RUN_FOLDER}/{rel}"] = _stamp(self.run_dir / rel)
        staged: dict[str, Path] = {}
        for name, role in job.spec.paths.items():
            home = Path(getattr(job.spec, name))
            here = root / role.value / name
            if role is PathRole.MODEL:
                here = here / home.name
                key = f"{MODEL_FILE}/{name}"
                self._models[key] = here
                if name in bundle.get("files", {}):
                    self._write(here, bundle["files"][name])
                    self._stamps[key] = _stamp(here)
            elif role is PathRole.DATASET:
                for rel, data, mtime_ns in bundle.get("folders", {}).get(name, []):
                    self._write(here / rel, data)
                    os.utime(here / rel, ns=(mtime_ns, mtime_ns))  # the fingerprint's
                self._stage_folder(here)
            else:
                self._stage_folder(here)
                if role is PathRole.OUTPUT:
                    self._outputs_by_key[f"{OUTPUT_FOLDER}/{name}"] = here
            self._home.append((str(here), str(home)))
            staged[name] = here
        context = dataclasses.replace(job.context, run_dir=self.run_dir)
        spec = dataclasses.replace(job.spec, **staged)  # type: ignore[type-var]
        self.job = dataclasses.replace(job, spec=spec, context=context)

    @staticmethod
    def _stage_folder(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def map_home(self, value: Any) -> Any:
        """`value` (JSON-like) with every staged path in it turned into the server's."""
        if isinstance(value, str):
            for staged, home in self._home:
                if value == staged or value.startswith(staged + "/"):
                    return home + value[len(staged) :]
            return value
        if isinstance(value, dict):
            return {k: self.map_home(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.map_home(v) for v in value]
        return value

    def sending(self, sender: Sender) -> Callable[[str, dict[str, Any]], None]:
        """The `send` of run_reporting: each event with the files that changed before it."""

        def send(kind: str, payload: dict[str, Any]) -> None:
            files = [] if kind in STEP_KINDS else self.changed_files()
            sender.send(
                {"type": EVENT, "kind": kind, "payload": self.map_home(payload), "files": files}
            )

        return send

    def changed_files(self) -> list[list[Any]]:
        """[key, bytes] for each staged output that changed since it was last sent:
        "run/<path in the run's folder>", "output/<field>/<path in it>" for an output
        folder, "model/<field>" for a model file."""
        changed = []
        for key, path in self._outputs():
            stamp = _stamp(path)
            if stamp is None or self._stamps.get(key) == stamp:
                continue
            self._stamps[key] = stamp
            changed.append([key, self._home_bytes(path)])
        return changed

    def _outputs(self) -> Iterator[tuple[str, Path]]:
        folders = {RUN_FOLDER: self.run_dir, **self._outputs_by_key}
        for prefix, folder in folders.items():
            for path in sorted(folder.rglob("*")):
                if path.is_file() and not path.name.startswith(".") and path.name != CANCEL_FILE:
                    yield f"{prefix}/{path.relative_to(folder)}", path
        for key, path in self._models.items():
            if path.is_file():
                yield key, path

    def _home_bytes(self, path: Path) -> bytes:
        """The file as the server keeps it: a model's card and a JSON file's paths mapped."""
        if path in self._models.values():
            from distill.models.library import rewrite_card

            relabelled = self.run_dir.parent / "relabel" / path.name
            rewrite_card(path, relabelled, self.map_home)
            return relabelled.read_bytes()
        data = path.read_bytes()
        if path.suffix == ".json":
            text = data.decode("utf-8", errors="surrogateescape")
            for staged, home in self._home:  # as JSON spells them, escapes and all
                text = text.replace(json.dumps(staged)[1:-1], json.dumps(home)[1:-1])
            data = text.encode("utf-8", errors="surrogateescape")
        return data


class Sender:
    """Puts messages on the attempt's Dask Queue, in order, a batch per put."""

    def __init__(self, queue) -> None:
        self._queue = queue
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="distill-sender", daemon=True)
        self._thread.start()

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._pending.append(message)
        self._wake.set()

    def close(self, last: dict[str, Any]) -> None:
        """Send what is pending, then `last`; returns once the scheduler holds them all."""
        self._closing = True
        self._wake.set()
        self._thread.join()
        self._queue.put(self._take() + [last])

    def _take(self) -> list[dict[str, Any]]:
        with self._lock:
            batch, self._pending = self._pending, []
        return batch

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait()
            self._wake.clear()
            batch = self._take()  # what was emitted while the last put was on its way
            if batch:
                self._queue.put(batch)


class StopWatcher:
    """`stopping()` turns true once the server asks for a cancel or lets go of the task."""

    def __init__(self, cancel, worker, key: str | None) -> None:
        self._cancel, self._worker, self._key = cancel, worker, key
        self._stop = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="distill-watch", daemon=True)
        self._thread.start()

    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self._closed.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._closed.is_set():
            try:
                asked = self._cancel.wait(timeout=WATCH_EVERY)
            except Exception:  # noqa: BLE001 - the scheduler is gone: nobody will hear us
                asked = True
            if asked or self._released():
                self._stop.set()
                return

    def _released(self) -> bool:
        task = self._worker.state.tasks.get(self._key) if self._key else None
        return task is not None and task.state in ("cancelled", "released", "forgotten")


def _shared(name: str) -> Any:
    """What the server scattered for this task under `name` (ClusterRunner._share)."""
    from distributed import Variable

    return Variable(name).get().result()


def _first_start(started) -> bool:
    """True the first time an attempt starts; a rescheduled copy finds the flag set."""
    if started.is_set():
        return False
    started.set()
    return True


def _current_key(worker) -> str | None:
    try:
        return worker.get_current_task()
    except Exception:  # noqa: BLE001 - an older worker without it: watch the cancel only
        return None


def _allocate_like_a_plain_process() -> None:
    """A Dask nanny starts its worker with MALLOC_TRIM_THRESHOLD_ set, which fixes glibc's
    mmap threshold at 128 KiB: every tensor buffer above it is then mapped and unmapped
    anew, and training runs at less than half speed (bench/cluster.py found it). Let
    buffers up to 32 MiB come from the heap again, as in a plain process, and give memory
    back above 64 MiB free. Elsewhere than glibc, nothing to do."""
    import ctypes
    import ctypes.util

    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(m_mmap_threshold, 32 * 1024**2)
        libc.mallopt(m_trim_threshold, 64 * 1024**2)
    except (OSError, AttributeError):
        pass


def _share_cores(worker) -> None:
    """Each of the worker's task threads gets its share of the machine's cores.

    A Dask nanny starts its worker with OMP_NUM_THREADS=1 (and MKL's, OpenBLAS's): torch,
    loaded under it, runs its OpenMP pool at 1 and spins in the kernel when asked for
    more later. So the share goes into the environment before torch's first import in this
    worker process, as well as to torch itself, with OpenMP's passive wait policy: the
    same decision as every torch process distill starts (distill/threads.py)."""
    _allocate_like_a_plain_process()
    fit_threads(worker.state.nthreads, users_env=False)  # the nanny's variables are not the user's


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns
