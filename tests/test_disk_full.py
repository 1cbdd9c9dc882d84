"""A full disk, for real: a small tmpfs mounted where distill writes.

Under the runs folder, a checkpoint write that runs out of space fails the run with the
reason, leaves the previous checkpoint whole and no temporary file; once space is back
the run resumes. Under the whole data directory, SQLite batch writes fail with "database
or disk is full": the recorder keeps the events, reports the error, and stores every
one of them, gapless, once space is back. The core keeps serving throughout.

Mounting needs root with CAP_SYS_ADMIN; where that is missing those tests skip and say so
(a mocked ENOSPC would test the mock, not the file system). What runs everywhere: every
file distill writes names itself when it does not fit, and a run's failure says "the
disk is full (PATH)". There the full disk is one injected ENOSPC from fsync, which a
real file system answers when it cannot place what it had accepted (a tmpfs cannot be
mounted without root, and RLIMIT_FSIZE raises EFBIG, not ENOSPC); only that one call
is replaced, so the rest of the write (the temporary file, its removal) is real.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from core_runs import collect, request
from helpers import tiny_spec, write_good_sounds
from waiting import until, within_deadline

from distill.audio.decode import write_wav
from distill.audio.images import write_mel_png
from distill.core.core import Core
from distill.files import DiskFullError, write_atomically
from distill.loadgen import LOAD, LoadRequest
from distill.models.model_file import save_model_file
from distill.paths import CHECKPOINT_NAME, database_path, runs_dir
from distill.training.checkpoint import load_checkpoint
from distill.training.jobs import RUN_TYPES
from distill.training.vqvae import train_vqvae

NO_PREVIEWS = 10**6  # epochs between previews: none in these runs


class Tmpfs:
    def __init__(self, mount_point: Path) -> None:
        self.mount_point = mount_point

    def mount(self, size_bytes: int) -> None:
        self.mount_point.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(self.mount_point))

    def grow(self, size_bytes: int) -> None:
        self._mount("-o", f"remount,size={size_bytes}", str(self.mount_point))

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.mount_point)], check=False)

    @staticmethod
    def _mount(*args: str) -> None:
        done = subprocess.run(["mount", *args], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {done.stderr}")


@pytest.fixture
def tmpfs_at(tmp_path: Path):
    mounted: list[Tmpfs] = []

    def make(mount_point: Path, size_bytes: int) -> Tmpfs:
        fs = Tmpfs(mount_point)
        fs.mount(size_bytes)
        mounted.append(fs)
        return fs

    yield make
    for fs in mounted:
        fs.unmount()


def test_a_checkpoint_that_does_not_fit_fails_the_run_and_keeps_the_last(
    tmp_path: Path, tmpfs_at
) -> None:
    write_good_sounds(tmp_path / "sounds")

    async def scenario() -> None:
        async with Core(
            tmp_path / "measure", run_types=RUN_TYPES
        ) as core:  # how big is one checkpoint?
            run_id = await core.submit(
                "vqvae", request(tmp_path / "sounds", 1, preview_every=NO_PREVIEWS)
            )
            await collect(core, run_id)
        size = (runs_dir(tmp_path / "measure") / run_id / CHECKPOINT_NAME).stat().st_size

        home = tmp_path / "home"
        # Room for one checkpoint, not for the next one's temporary file beside it.
        disk = tmpfs_at(runs_dir(home), size * 3 // 2)
        async with Core(home, run_types=RUN_TYPES) as core:
            run_id = await core.submit(
                "vqvae", request(tmp_path / "sounds", 3, preview_every=NO_PREVIEWS)
            )
            events = await collect(core, run_id)
            failed = events[-1]
            assert failed.kind == "run_failed"
            run_dir = runs_dir(home) / run_id
            assert failed.payload["error"] == f"the disk is full ({run_dir / CHECKPOINT_NAME})"
            assert failed.payload["checkpoint_path"] == str(run_dir / CHECKPOINT_NAME)
            assert load_checkpoint(run_dir / CHECKPOINT_NAME).next_epoch == 1  # whole
            assert [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")] == []

            disk.grow(size * 4)  # space is back: the same core resumes the run
            await core.resume(run_id)
            events = await collect(core, run_id, after=failed.seq)
            assert events[-1].kind == "run_completed"
            assert [e.payload["epoch"] for e in events if e.kind == "epoch_metrics"] == [1, 2]

    within_deadline(scenario())


def test_a_full_disk_under_sqlite_loses_no_event(tmp_path: Path, tmpfs_at) -> None:
    home = tmp_path / "home"
    disk = tmpfs_at(home, 256 * 1024)

    async def scenario() -> None:
        async with Core(home, run_types={**RUN_TYPES, "load": LOAD}) as core:
            run_id = await core.submit("load", LoadRequest(20_000, 0.5))  # megabytes of events
            follower = asyncio.ensure_future(collect(core, run_id))
            error = await until(lambda: core.last_write_error, what="the disk to fill")
            assert "full" in error

            disk.grow(64 * 2**20)
            events = await follower
            assert events[-1].kind == "run_completed"
        with sqlite3.connect(database_path(home)) as db:
            seqs = [s for (s,) in db.execute(
                "SELECT seq FROM events WHERE run_id = ? ORDER BY seq", (run_id,))]  # fmt: skip
        assert seqs == list(range(1, 10_000 + 4))

    within_deadline(scenario())


# -- without a mount: ENOSPC from fsync, for the files whose name ends a certain way ------


@pytest.fixture
def full_for(monkeypatch):
    """full_for(suffix): from now on, fsync of a temporary file for a name ending in
    `suffix` fails with ENOSPC; every other fsync is the real one."""
    real_fsync = os.fsync

    def make(suffix: str) -> None:
        def fsync(fd: int) -> None:
            name = os.readlink(f"/proc/self/fd/{fd}")
            if name.endswith(".tmp") and name.rsplit(".", 2)[0].endswith(suffix):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    return make


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("clip.wav", lambda path: write_wav(path, np.zeros(800, np.float32), 8000)),
        ("mel.png", lambda path: write_mel_png(path, np.zeros((8, 8)), -1.0, 0.0)),
        ("m.distill", lambda path: save_model_file(path, {"w": torch.zeros(4)}, {"format": 1})),
        ("notes.json", lambda path: write_atomically(path, "{}")),
    ],
)
def test_every_write_that_does_not_fit_names_its_file(tmp_path: Path, full_for, name, write):
    full_for(name)
    with pytest.raises(DiskFullError) as raised:
        write(tmp_path / name)
    assert str(raised.value) == f"the disk is full ({tmp_path / name})"
    assert raised.value.errno == errno.ENOSPC  # still the OSError a caller checks for
    assert list(tmp_path.iterdir()) == []  # no temporary file, no half file


def test_a_run_that_fills_the_disk_says_so_and_names_the_file(tmp_path: Path, full_for):
    write_good_sounds(tmp_path / "sounds")
    spec = tiny_spec(tmp_path / "sounds", tmp_path, epochs=1)
    full_for(CHECKPOINT_NAME)
    events = []
    with pytest.raises(DiskFullError):
        train_vqvae(spec, events.append)
    failed = events[-1]
    assert failed.kind == "run_failed"
    assert failed.error == f"the disk is full ({spec.run_dir / CHECKPOINT_NAME})"
