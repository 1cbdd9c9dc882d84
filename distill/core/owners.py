"""Who owns a run: the process whose core queued it, or last resumed it.

A run is "queued" or "running" only while that process lives. A core killed outright
(SIGKILL, the out-of-memory killer, a power cut) cannot record that its runs ended, so
whoever reads runs next checks their owners first: a run whose owner is gone is ended as
interrupted (resumable), with an event like any other ending, before it is listed or
shown. So a listing, a run's page and the API never call a dead process's run running.

The owner's pid is in the run's spec (OWNER_FIELD). A pid the system has since handed to
another process reads as alive: the run then waits for the next core that starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distill.core.store import OWNER_FIELD, Store
from distill.events import Event, RunInterrupted
from distill.paths import CHECKPOINT_NAME

ORPHAN_REASON = "distill stopped before the run finished; resume it to go on"


def process_alive(pid: int) -> bool:
    """Whether a process of that id exists (a run's owner, a server in server.json)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_of(run: dict[str, Any]) -> int | None:
    owner = run["spec"].get(OWNER_FIELD)
    return owner if isinstance(owner, int) else None


def orphaned(run: dict[str, Any], starting: bool = False) -> bool:
    """Whether an unfinished run's owner is gone.

    A core that is `starting` owns nothing yet: to it, a run recorded under its own pid
    (left by an earlier process that had the same pid) or under no pid at all (recorded
    by a distill from before owners were) is an orphan too. Anyone else leaves those be.
    """
    owner = owner_of(run)
    if owner is None or owner == os.getpid():
        return starting
    return not process_alive(owner)


async def interrupt_orphans(store: Store, starting: bool = False) -> list[Event]:
    """End every unfinished run whose owner is gone as interrupted; the events stored.

    Each ending is appended only if the run is still unfinished under the owner checked
    here (store.interrupt_orphan), so two readers never both end a run, and a run another
    core resumed in the meantime is left to it.
    """
    ended = []
    for run in await store.unfinished_runs():
        if not orphaned(run, starting):
            continue
        checkpoint = Path(run["spec"].get("run_dir", "")) / CHECKPOINT_NAME
        payload = RunInterrupted(ORPHAN_REASON, str(checkpoint) if checkpoint.is_file() else None)
        event = await store.interrupt_orphan(run["run_id"], owner_of(run), payload)
        if event is not None:
            ended.append(event)
    return ended


async def model_in_use(store: Store, name: str) -> str | None:
    """Why the model called `name` must not be renamed or deleted now, or None.

    A queued or running run reads the model's file when it starts and a prior run writes
    its prior into that file when it ends: moved or gone, the run fails with "no such
    model file". So changing the file waits until the run ends. Callers end the runs of
    dead processes first (interrupt_orphans, Core.settle): those use nothing.
    """
    runs = [r for r in await store.unfinished_runs() if r["model_name"] == name]
    if not runs:
        return None
    busy = ", ".join(f"{r['run_id']} ({r['status']})" for r in runs)
    return (
        f"model {name!r} is in use by run {busy}: rename or delete it once the run ends,"
        f" or cancel the run first (`distill runs cancel {runs[0]['run_id']}`)"
    )
