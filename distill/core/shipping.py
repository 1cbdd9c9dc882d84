"""What travels between the server and a cluster task: the bundle a task carries out
(what the job's paths say it reads), and the files it sends home, written only where
the job's paths allow (core/cluster.py drives both; core/cluster_task.py unpacks)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from distill.audio.formats import find_audio_files, is_supported
from distill.core.cluster_config import ClusterError
from distill.core.cluster_task import MODEL_FILE, OUTPUT_FOLDER, RUN_FOLDER, Bundle
from distill.core.runner import Job
from distill.files import write_atomically
from distill.paths import CHECKPOINT_NAME
from distill.run_types import PathRole


def resources_for(job: Job) -> dict[str, float] | None:
    """A run asked to run on CUDA waits for a worker that declares a GPU resource."""
    if getattr(job.spec, "device", "") == "cuda":
        return {"GPU": 1}
    return None


def make_bundle(job: Job) -> Bundle:
    """What a task carries, read from the server's disk: the files of the job's dataset
    folders (formats a scan skips travel empty: their names are enough to report them),
    its model files that exist, and a resumed run's checkpoint."""
    bundle: Bundle = {"folders": {}, "files": {}}
    for name, role in job.spec.paths.items():
        path = Path(getattr(job.spec, name))
        if role is PathRole.DATASET and path.is_dir():
            bundle["folders"][name] = [
                [
                    str(file.relative_to(path)),
                    file.read_bytes() if is_supported(file) else b"",
                    file.stat().st_mtime_ns,
                ]
                for file in find_audio_files(path)
            ]
        elif role is PathRole.MODEL and path.is_file():
            bundle["files"][name] = path.read_bytes()
    checkpoint = job.context.run_dir / CHECKPOINT_NAME
    if job.context.resume and checkpoint.is_file():
        bundle["run"] = [[CHECKPOINT_NAME, checkpoint.read_bytes()]]
    return bundle


def write_home(job: Job, files: list[list[Any]]) -> None:
    """Write files a task sent into the run's folder, an output folder of the job, or
    (a model) into the library, each atomically; a key that would land outside is
    refused, and a model file that does not check out is not let into the library."""
    for key, data in files:
        head, _, rest = str(key).partition("/")
        if head == MODEL_FILE and job.spec.paths.get(rest) is PathRole.MODEL:
            write_model_home(Path(getattr(job.spec, rest)), data)
            continue
        if head == RUN_FOLDER:
            folder, rel = job.context.run_dir.resolve(), rest
        elif head == OUTPUT_FOLDER:
            name, _, rel = rest.partition("/")
            if job.spec.paths.get(name) is not PathRole.OUTPUT:
                raise ClusterError(f"a task sent a file for no output of its run: {key!r}")
            folder = Path(getattr(job.spec, name)).resolve()
        else:
            raise ClusterError(f"a task sent a file for outside its run's folders: {key!r}")
        target = (folder / rel).resolve()
        if not target.is_relative_to(folder) or target == folder:
            raise ClusterError(f"a task sent a file for outside its run's folders: {key!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, data)


def write_model_home(path: Path, data: bytes) -> None:
    """A model file from a worker is checked like any file from outside before it
    replaces the library's copy."""
    from distill.models.library import read_card

    incoming = path.with_name(f".{path.name}.{secrets.token_hex(4)}.incoming")
    try:
        write_atomically(incoming, data)
        read_card(incoming)  # ModelFileError with the reason
        os.replace(incoming, path)
    finally:
        incoming.unlink(missing_ok=True)
