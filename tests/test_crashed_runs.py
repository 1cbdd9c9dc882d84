"""A `distill train` killed outright (SIGKILL) leaves its run "running" in SQLite; nobody
may go on showing it so: the CLI, the API and the pages see that its owner is gone and
show it interrupted, resumable. Real processes, a real data directory."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest
from commands import DISTILL, command_env, distill
from helpers import write_good_sounds
from waiting import DEADLINE, wait_until

from distill.paths import database_path
from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings

pytestmark = pytest.mark.slow
SMALL = ["--rvq-levels", "2", "--codebook-size", "16", "--batch-size", "4"]


def running_run(home: Path) -> str | None:
    """The id of the run SQLite calls running, once there is one."""
    try:
        with contextlib.closing(sqlite3.connect(database_path(home))) as db:
            row = db.execute("SELECT run_id FROM runs WHERE status = 'running'").fetchone()
    except sqlite3.OperationalError:  # no database or no tables yet
        return None
    return row[0] if row else None


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def training_in_its_own_core(home: Path, dataset: Path):
    """`distill train` with no server (so its own core runs it); yields (process, run id)
    once SQLite says running. Its whole process group is killed on the way out."""
    process = subprocess.Popen(
        [*DISTILL, "train", str(dataset), "--epochs", "500", *SMALL, "--json"],
        env=command_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield process, wait_until(lambda: running_run(home), what="SQLite to say running")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def kill_outright(process: subprocess.Popen) -> None:
    """SIGKILL the command's own process only, as the out-of-memory killer would: its
    worker and the rest of its process group are left to notice."""
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=DEADLINE)


def test_a_killed_train_is_listed_and_shown_interrupted(tmp_path: Path) -> None:
    home, dataset = tmp_path / "home", tmp_path / "sounds"
    write_good_sounds(dataset)
    with training_in_its_own_core(home, dataset) as (process, run_id):
        kill_outright(process)
        assert running_run(home) == run_id  # the record alone still says running

        listed = json.loads(distill(home, "runs", "--json").stdout)
        assert [(r["run_id"], r["status"]) for r in listed] == [(run_id, "interrupted")]
        shown = json.loads(distill(home, "runs", "show", run_id, "--json").stdout)
        assert shown["status"] == "interrupted" and "resume" in shown["error"]
        human = distill(home, "runs", "show", run_id)
        assert "status: interrupted" in human.stdout, human.stdout
        assert "running" not in distill(home, "runs").stdout
        filtered = json.loads(distill(home, "runs", "--status", "running", "--json").stdout)
        assert filtered == []

        # The orphaned worker stops by itself (it would train on for nobody, and a resume
        # would give the run two writers): the killed command's process group empties.
        wait_until(lambda: not group_alive(process.pid), what="the orphaned worker to exit")
    with contextlib.closing(sqlite3.connect(database_path(home))) as db:
        kinds = [k for (k,) in db.execute("SELECT kind FROM events WHERE run_id = ?", (run_id,))]
    assert kinds.count("run_interrupted") == 1 and kinds[-1] == "run_interrupted"


def test_a_server_shows_another_process_s_dead_run_interrupted(tmp_path: Path) -> None:
    home, dataset = tmp_path / "home", tmp_path / "sounds"
    write_good_sounds(dataset)
    with training_in_its_own_core(home, dataset) as (process, run_id):
        settings = ServerSettings.for_host(home, "127.0.0.1", 0, allowed_roots=(tmp_path,))
        with ServerThread(settings) as server:
            # Started while the command lives: the run is that process's, and running.
            runs = httpx.get(server.url + "/api/runs", trust_env=False).json()
            assert [r["status"] for r in runs] == ["running"]
            kill_outright(process)

            run = httpx.get(f"{server.url}/api/runs/{run_id}", trust_env=False).json()
            assert run["status"] == "interrupted"
            runs = httpx.get(server.url + "/api/runs?status=running", trust_env=False).json()
            assert runs == []
            page = httpx.get(f"{server.url}/runs/{run_id}", trust_env=False).text
            assert 'data-status="interrupted"' in page and "data-live" not in page
            listing = httpx.get(server.url + "/runs", trust_env=False).text
            assert "status-interrupted" in listing and "status-running" not in listing
            home_page = httpx.get(server.url + "/", trust_env=False).text
            assert "status-running" not in home_page
