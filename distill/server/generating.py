"""Generate requests in progress, for the model page to show and cancel.

A request runs in the helper process (helper.generate), or on a cluster worker when the
server has a cluster, while its page polls here. Its id is its folder under
generated/MODEL/; progress and cancel travel through files in that folder
(helper.PROGRESS_NAME, CANCEL_FILE), so nothing but the folder is shared with whatever
runs it (a cluster worker has its own copy, mirrored home as it changes). A request stays listed until someone reads its end (`finish`): the page
polling it, or the plain form post waiting on it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.paths import CANCEL_FILE
from distill.server import helper

MAX_KEPT = 64  # ended requests nobody read yet (a closed tab): the oldest are forgotten


@dataclass
class Generation:
    model_name: str
    folder: Path
    count: int
    task: asyncio.Task = field(repr=False)

    @property
    def id(self) -> str:
        return self.folder.name

    def progress(self) -> dict[str, Any]:
        """What the page shows: clips done, whether it started, whether it is stopping."""
        try:
            done = json.loads((self.folder / helper.PROGRESS_NAME).read_text())["clips_done"]
            started = True
        except (OSError, ValueError, KeyError, TypeError):
            done, started = 0, False
        stopping = (self.folder / CANCEL_FILE).exists()
        return {"clips_done": done, "count": self.count, "started": started, "stopping": stopping}


# Runs fn(model_path, folder, *args) somewhere and returns its result: Helper.call_in_folder
# here, or ClusterRunner.call_in_folder on a cluster.
CallInFolder = Callable[..., Awaitable[Any]]


class Generations:
    """The requests in hand or queued, by model."""

    def __init__(self, call_in_folder: CallInFolder) -> None:
        self.call_in_folder = call_in_folder
        self._items: dict[tuple[str, str], Generation] = {}

    def start(
        self, model_name: str, path: Path, folder: Path, options: dict[str, Any]
    ) -> Generation:
        call = self.call_in_folder(helper.generate, path, folder, options)
        generation = Generation(model_name, folder, options["count"], asyncio.ensure_future(call))
        self._items[(model_name, generation.id)] = generation
        ended = [key for key, g in self._items.items() if g.task.done()]
        for key in ended[: max(0, len(ended) - MAX_KEPT)]:
            del self._items[key]
        return generation

    def of_model(self, model_name: str) -> list[Generation]:
        """Its requests not yet finished, newest first."""
        found = [g for (m, _), g in self._items.items() if m == model_name]
        return sorted(found, key=lambda g: g.id, reverse=True)

    def get(self, model_name: str, generation_id: str) -> Generation | None:
        return self._items.get((model_name, generation_id))

    def cancel(self, generation: Generation) -> None:
        """Stop before the next clip; the clips already written stay in the history."""
        if not generation.task.done():
            generation.folder.mkdir(parents=True, exist_ok=True)  # it may still be queued
            (generation.folder / CANCEL_FILE).touch()

    async def finish(self, generation: Generation) -> str | None:
        """Wait for its end and forget it; the error the helper gave, if any."""
        try:
            result = await asyncio.shield(generation.task)
        except Exception as error:  # noqa: BLE001 - the helper died twice, say: tell the page
            return f"generating failed: {error or type(error).__name__}"
        finally:
            self._items.pop((generation.model_name, generation.id), None)
        return result.get("error")

    async def close(self) -> None:
        for generation in self._items.values():
            generation.task.cancel()
        self._items.clear()
