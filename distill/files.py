"""Writing a file so that a reader sees the old one or the new one, never half of either.

Every file distill replaces while something may read it (a model, a checkpoint, a cached
mel, the server's address, a request's progress) is written here: a temporary file in
the same folder (a rename is atomic only within one filesystem), flushed and fsynced,
renamed over the target, then the folder fsynced so the rename survives a power cut. On
any error, an interrupt included, the temporary file is removed and the old file stays.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A write ran out of space; it names the file it was writing, which ENOSPC from a
    write() does not (a run failed with "[Errno 28] No space left on device", no path)."""

    def __init__(self, path: Path | str, code: int = errno.ENOSPC) -> None:
        super().__init__(code, os.strerror(code), str(path))

    def __str__(self) -> str:
        return f"the disk is full ({self.filename})"

    def __reduce__(self):  # across processes (a pool worker's error) with its path
        return (type(self), (self.filename, self.errno))


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = 0o666) -> Iterator[BinaryIO]:
    """A binary file to write; it replaces `path` when the block ends without an error.

    `mode` as for os.open (the umask still applies): 0o600 for a file that holds a secret.
    Running out of space raises DiskFullError naming `path`: every file distill writes
    comes through here, so this is the one place a full disk gets its file's name.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(error, OSError) and not isinstance(error, DiskFullError):
            if error.errno in DISK_FULL_ERRNOS:
                raise DiskFullError(path, error.errno) from error
        raise
    _fsync_folder(path.parent)


def write_atomically(path: Path, data: bytes | str, mode: int = 0o666) -> Path:
    """`data` (str as UTF-8) as the whole of `path`, through atomic_file."""
    with atomic_file(path, mode) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; some platforms and filesystems cannot fsync a folder, so
    this is best effort."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


STALE_SECONDS = 3600.0  # no write of distill's takes an hour without touching its file


def remove_stale_temporaries(folder: Path, older_than: float = STALE_SECONDS) -> list[Path]:
    """Remove atomic_file's temporary files that a process killed mid-write left in
    `folder` (a 0-byte `.NAME.distill.HEX.tmp` stayed in models/ for good); only those
    untouched for `older_than` seconds, so a write under way in another process is not
    cut from under it. Returns what was removed."""
    removed = []
    cutoff = time.time() - older_than
    for path in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if _TEMPORARY.fullmatch(path.name) and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
    return removed


_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{16}\.tmp")


def parse_json(text: str | bytes) -> Any:
    """JSON from outside: a ValueError (never a RecursionError) for one nested so deep
    that the parser gives up (`[` x 100,000 is 100 kB)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
