"""Work the server hands to a spawned helper process: dataset scans and the code editor.

A scan decodes every file of a folder (seconds of CPU for a few hundred sounds), and an
editor's decode runs the model; run on the server's event loop either would stall every
live stream. A helper is one spawned process (never forked: torch), started on first
use, restarted if it dies; the server keeps two (app.py), so an edit never waits behind a
scan. Generating is not here: a generate request is a run on the core (training/jobs.py).

The functions of this module run in a helper; they take and return plain data. The
editor's keep its model loaded between edits, so an edit answers in milliseconds.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from distill.files import write_atomically
from distill.threads import fit_threads


class Helper:
    """One helper process; `call` runs a function of this module there."""

    def __init__(self, torch_processes: int = 1) -> None:
        """`torch_processes`: how many torch processes share the cores with this one
        (the training pool's workers and the helper: distill/threads.py)."""
        self._pool: ProcessPoolExecutor | None = None
        self._torch_processes = torch_processes

    async def call(self, fn, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            if self._pool is None:
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=context,
                    initializer=start_helper,
                    initargs=(self._torch_processes,),
                )
            pool = self._pool
            try:
                return await loop.run_in_executor(pool, fn, *args)
            except BrokenProcessPool:
                # Only the first of the calls the broken pool held replaces it: each of
                # ~90 queued calls shutting down the pool the previous one had just made
                # spawned ~90 helpers at once.
                if self._pool is pool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)


def start_helper(torch_processes: int) -> None:
    """The helper process's initializer: its threads first (before torch loads), then
    the watch on its server."""
    fit_threads(torch_processes)
    exit_when_orphaned()


def exit_when_orphaned() -> None:
    """In the helper: end this process once the server's is gone. A SIGKILLed server
    left its helper (most of a GiB, a model loaded) running, reparented, for good; the
    training worker does the same (core/worker.py)."""
    parent = multiprocessing.parent_process()  # spawned: its sentinel ends with it
    if parent is not None:
        threading.Thread(target=_exit_after, args=(parent,), daemon=True).start()


def _exit_after(parent) -> None:
    parent.join()
    os._exit(0)


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


# -- the code editor: its operations run here, on a model kept loaded between edits -----


@functools.lru_cache(maxsize=4)
def _editor_model(path: str, stamp: tuple[int, int]):
    """(vqvae, name, ModelWithPrior or None) of a model file as it is now (`stamp`: its
    size and mtime, so a changed file is loaded anew)."""
    from distill.models.library import load_vqvae, load_with_prior
    from distill.models.model_file import ModelFileError

    try:
        loaded = load_with_prior(Path(path))
        return loaded.vqvae, loaded.card.name, loaded
    except ModelFileError:  # no prior (or a bad file, which load_vqvae then names)
        vqvae, card = load_vqvae(Path(path))
        return vqvae, card.name, None  # everything but regenerate


def _editor(model_path: str):
    info = Path(model_path).stat()
    return _editor_model(model_path, (info.st_size, info.st_mtime_ns))


def edit_open(model_path: str, source: str) -> dict[str, Any]:
    """A sound (audio, or a saved .codes.json) as the editor opens it: its grid, the
    colours of every level's codes and the grid's mel as a PNG; or {"error": why}."""
    import base64

    from distill.inference.codes import (
        CodesError,
        check_belongs,
        check_editable,
        code_colours,
        encode_file,
        read_codes,
    )  # fmt: skip
    from distill.models.model_file import ModelFileError

    try:
        vqvae, name, loaded = _editor(model_path)
        if source.endswith(".codes.json"):
            grid = read_codes(Path(source))
            check_belongs(grid, vqvae, name)
        else:
            grid = encode_file(vqvae, name, Path(source), for_editor=True)
        check_editable(grid)
        png = _mel_picture(vqvae, grid, set())
    except (ModelFileError, CodesError, OSError) as error:
        return {"error": str(error)}
    return {
        "grid": grid.to_json(),
        "colours": code_colours(vqvae),
        "mel_png": base64.b64encode(png).decode(),
        "has_prior": loaded is not None,
    }


def _mel_picture(vqvae, grid, muted: set[int]) -> bytes:
    """The PNG the editor draws over its grid: the mel the model decodes from the grid
    (with `muted` levels left out), one pixel per mel frame."""
    from distill.audio.images import mel_png
    from distill.inference.codes import levels_mel

    mel = levels_mel(vqvae, grid, muted).numpy()
    floor = math.log(vqvae.config.mel.log_floor)
    return mel_png(mel, floor, max(float(mel.max()), floor + 1), scale=1)


def edit_mel(model_path: str, grid_json: dict, muted: list[int]) -> dict[str, Any]:
    """{"png": the mel picture of the grid as edited} or {"error": why}: redrawn after
    every edit, so a gap an edit leaves is seen as well as heard."""
    from distill.inference.codes import CodesError

    try:
        vqvae, _, grid = _checked_grid(model_path, grid_json)
        return {"png": _mel_picture(vqvae, grid, {int(level) for level in muted})}
    except CodesError as error:
        return {"error": str(error)}


def _checked_grid(model_path: str, grid_json: dict):
    """(vqvae, ModelWithPrior or None, grid): a grid the page sent, checked against the
    model it says it belongs to; a CodesError says why not."""
    from distill.inference.codes import CodeGrid, check_belongs, check_editable

    vqvae, name, loaded = _editor(model_path)
    grid = CodeGrid.from_json(grid_json)
    check_belongs(grid, vqvae, name)
    check_editable(grid)
    return vqvae, loaded, grid


def edit_decode(model_path: str, grid_json: dict, muted: list[int], chunk: int) -> dict[str, Any]:
    """Piece `chunk` of the grid's sound with `muted` levels left out, as 16-bit PCM:
    {"pcm": bytes, "chunks": how many pieces, "sample_rate": rate}, or {"error": why}.
    One piece per call, so that the editor's lane can put an edit between two pieces of
    a long decode, and stop one whose page has gone (server/editor_lane.py)."""
    import io

    import soundfile as sf

    from distill.inference.codes import CodesError, decode_chunk, decode_chunks

    try:
        vqvae, _, grid = _checked_grid(model_path, grid_json)
        audio = decode_chunk(vqvae, grid, {int(level) for level in muted}, chunk)
    except CodesError as error:
        return {"error": str(error)}
    buffer = io.BytesIO()
    sf.write(buffer, audio.clip(-1, 1), grid.sample_rate, format="RAW", subtype="PCM_16")
    return {
        "pcm": buffer.getvalue(),
        "chunks": decode_chunks(vqvae, grid),
        "sample_rate": grid.sample_rate,
    }


def edit_regenerate(
    model_path: str, grid_json: dict, start: int, end: int, sampling: dict, seed: int,
    window: int,
) -> dict[str, Any]:  # fmt: skip
    """Window `window` of steps [start, end) drawn anew (inference/regenerate.py):
    {"grid": the grid with it drawn, "windows": how many windows the range has, "draws":
    rounds drawn, "silent_steps": its steps if silent on every round, else 0}, or
    {"error": why}. One window per call, so that the editor's lane can put an edit between
    two windows of a long Variation, and stop one whose page has gone (editor_lane.py);
    each call is given the grid the one before it drew."""
    from distill.inference.codes import CodesError
    from distill.inference.regenerate import regenerate_window, regenerate_windows
    from distill.models.sampling import Sampling

    try:
        _, loaded, grid = _checked_grid(model_path, grid_json)
        if loaded is None:
            raise CodesError("this model has no prior yet: train one to regenerate")
        made = regenerate_window(loaded, grid, start, end, Sampling(**sampling), seed, window)
        return {
            "grid": made.grid.to_json(),
            "windows": regenerate_windows(loaded, grid, start, end),
            "draws": made.draws,
            "silent_steps": made.silent_steps,
        }
    except (CodesError, ValueError) as error:
        return {"error": str(error)}


def edit_save(
    model_path: str, grid_json: dict, folder: str, sound_name: str, wav: bytes
) -> dict[str, Any]:
    """Write NAME.wav (`wav`, the grid as the lane decoded it) and NAME.codes.json into
    the model's edits folder."""
    from distill.inference.codes import CodesError

    try:
        _, _, grid = _checked_grid(model_path, grid_json)
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        write_atomically(target / f"{sound_name}.wav", wav)
        write_atomically(target / f"{sound_name}.codes.json", json.dumps(grid.to_json()))
    except CodesError as error:
        return {"error": str(error)}
    return {"saved": sound_name}
