"""Work the server hands to one spawned helper process: dataset scans and generation.

A scan decodes every file of a folder (seconds of CPU for a few hundred sounds), and a
generate request samples and decodes for seconds too; run on the server's event loop
either would stall every live stream. The helper is one spawned
process (never forked: torch), started on first use, restarted if it dies.

`scan_folder` and `generate` run in the helper; they take and return plain data.
`generate` reports through two files in its request's folder, as a run's cancel file
does: PROGRESS_NAME (clips written so far), which it writes, and CANCEL_FILE, which the
server touches to stop it before the next clip.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from distill.files import write_atomically
from distill.paths import CANCEL_FILE

PROGRESS_NAME = "progress.json"


class Helper:
    """One helper process; `call` runs a function of this module there."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def call(self, fn, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            if self._pool is None:
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
            try:
                return await loop.run_in_executor(self._pool, fn, *args)
            except BrokenProcessPool:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def call_in_folder(self, fn, model_path: Path, folder: Path, *args: Any) -> Any:
        """`fn(model_path, folder, *args)` here, as a cluster would run it elsewhere."""
        return await self.call(fn, str(model_path), str(folder), *args)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)


def scan_folder(dataset: str, cache_dir: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The preflight a run would do: {"scan": DatasetScanned fields} or {"error": why}."""
    from distill.audio.dataset import DatasetError
    from distill.training.vqvae import TrainSettings, TrainSpec, preflight_event, prepare_data

    spec = TrainSpec(
        dataset=Path(dataset),
        run_dir=Path(cache_dir) / "unused",
        model_path=Path(cache_dir) / "unused.distill",
        cache_dir=Path(cache_dir),
        settings=TrainSettings(),
        overrides=overrides,
    )
    try:
        return {"scan": preflight_event(prepare_data(spec)).to_dict()}
    except (DatasetError, ValueError) as error:
        return {"error": str(error)}


def generate(model_path: str, out_dir: str, options: dict[str, Any]) -> dict[str, Any]:
    """Write a request's clips and manifest: {"out_dir": folder} or {"error": why}."""
    from distill.models.model_file import ModelFileError
    from distill.training.generate import GenerateSpec, generate_clips

    folder = Path(out_dir)
    progress, cancel = folder / PROGRESS_NAME, folder / CANCEL_FILE

    def report(clips_done: int) -> None:  # atomically: the server never reads half a file
        write_atomically(progress, json.dumps({"clips_done": clips_done}))

    try:
        folder.mkdir(parents=True, exist_ok=True)
        if cancel.exists():  # cancelled while it waited for the helper
            return {"out_dir": out_dir}
        report(0)
        spec = GenerateSpec(model_path=Path(model_path), out_dir=folder, **options)
        generate_clips(spec, lambda clip: report(clip.index + 1), cancel.exists)
    except (ModelFileError, ValueError) as error:
        return {"error": str(error)}
    finally:
        progress.unlink(missing_ok=True)
        cancel.unlink(missing_ok=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # failed before any clip: no empty entry in the history
    return {"out_dir": out_dir}
