"""The editor's lane: its own helper process, where a small edit never waits behind long
work, and long work stops when its page has gone.

A decode of a 3-minute grid takes seconds of CPU; in one helper call it held the lane,
and a small edit (a 1 s grid, tens of milliseconds) sent after it waited for all of it
(13 s under load). So a decode runs as pieces (inference/codes.py's decode_chunk, a
bounded amount of sound each, the same sound as one piece would give), one helper call
each: the first piece is asked for like any edit, the others as long work, which goes
to the helper only while no edit is waiting and one piece at a time, whatever number of
long decodes are under way. An edit then waits for at most one piece. Between pieces a
long decode asks whether its client is still connected, and stops if not: a closed
page no longer keeps the lane busy for minutes.

A regenerate ("Regenerate" over a long selection, "Variation" over the whole sound) goes
the same way, one window of the range per helper call (inference/regenerate.py's
regenerate_window, each drawn after the codes the window before it drew): the first as
an edit, the others as long work, and it stops between windows once its page has gone.
"""

from __future__ import annotations

import asyncio
import io
import logging
import wave
from typing import Any

import numpy as np
from starlette.requests import Request

from distill.inference.one_shot import is_silent
from distill.inference.regenerate import silent_stretch_message
from distill.server import helper
from distill.server.helper import Helper

logger = logging.getLogger(__name__)


class EditorLane:
    """The editor's helper; `call` for an edit, `call_long` for one piece of long work."""

    def __init__(self, editor_helper: Helper) -> None:
        self._helper = editor_helper
        self._edits = 0  # edits sent to the helper and not yet answered
        self._no_edits = asyncio.Event()
        self._no_edits.set()
        self._long = asyncio.Lock()  # one piece of long work at the helper at a time
        self.long_pieces = 0  # pieces of long work done (a count for tests and benchmarks)
        self.abandoned = 0  # long decodes and regenerates stopped: their client had gone

    async def call(self, fn, *args: Any) -> Any:
        """An edit: straight to the helper, behind at most one piece of long work."""
        self._edits += 1
        self._no_edits.clear()
        try:
            return await self._helper.call(fn, *args)
        finally:
            self._edits -= 1
            if self._edits == 0:
                self._no_edits.set()

    async def call_long(self, fn, *args: Any) -> Any:
        """One piece of long work: once no edit is waiting, and no other piece is out."""
        async with self._long:
            while self._edits:
                await self._no_edits.wait()
            try:
                return await self._helper.call(fn, *args)
            finally:
                self.long_pieces += 1

    async def close(self) -> None:
        await self._helper.close()


async def decoded_wav(
    lane: EditorLane, model_path: str, grid: dict, muted: list[int], client: Request | None
) -> dict[str, Any]:
    """{"wav": bytes, "silent": whether it is silence by generation's rule} of the grid,
    decoded piece by piece; {"error": why}; or
    {"abandoned": True} when `client` went away before the last piece (None: work on
    whoever leaves, as a save does)."""
    first = await lane.call(helper.edit_decode, model_path, grid, muted, 0)
    if "error" in first:
        return first
    pieces = [first["pcm"]]
    for chunk in range(1, first["chunks"]):
        if await _has_gone(lane, client, f"decode after {chunk} of {first['chunks']} pieces"):
            return {"abandoned": True}
        piece = await lane.call_long(helper.edit_decode, model_path, grid, muted, chunk)
        if "error" in piece:
            return piece
        pieces.append(piece["pcm"])
    pcm = b"".join(pieces)
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    return {"wav": wav_bytes(pcm, first["sample_rate"]), "silent": is_silent(audio)}


async def regenerated(
    lane: EditorLane, model_path: str, grid: dict, span: tuple[int, int], sampling: dict,
    seed: int, client: Request,
) -> dict[str, Any]:  # fmt: skip
    """{"grid": the grid with steps span = [start, end) drawn anew, "draws": the most
    rounds a window took, "warning": what was silence on every round, or None}, drawn
    window by window; {"error": why}; or {"abandoned": True} when `client` went away
    before the last window. The windows and their order are those of
    inference/regenerate.py's regenerate, so the editor and `distill codes regenerate`
    draw the same grid for a seed."""
    start, end = span
    made = await lane.call(helper.edit_regenerate, model_path, grid, start, end, sampling, seed, 0)
    if "error" in made:
        return made
    draws, silent_steps = made["draws"], made["silent_steps"]
    for window in range(1, made["windows"]):
        if await _has_gone(lane, client, f"regenerate after {window} of {made['windows']} windows"):
            return {"abandoned": True}
        made = await lane.call_long(
            helper.edit_regenerate, model_path, made["grid"], start, end, sampling, seed, window
        )
        if "error" in made:
            return made
        draws, silent_steps = max(draws, made["draws"]), silent_steps + made["silent_steps"]
    said = silent_stretch_message(draws, silent_steps, end - start) if silent_steps else None
    return {"grid": made["grid"], "draws": draws, "warning": said}


async def _has_gone(lane: EditorLane, client: Request | None, where: str) -> bool:
    """Whether long work's client has disconnected (None: nobody to wait for, as a save);
    counted and logged, since the work stops there."""
    if client is None or not await client.is_disconnected():
        return False
    lane.abandoned += 1
    logger.info("an editor %s stopped: its client has gone", where)
    return True


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """Mono 16-bit PCM as a WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm)
    return buffer.getvalue()
