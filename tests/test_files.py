"""distill/files.py: a replaced file is the old one or the new one, never half, and no
temporary file is left beside it whatever happens."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from distill.files import atomic_file, write_atomically


def test_text_and_bytes_replace_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomically(path, '{"clips_done": 1}')
    assert path.read_text() == '{"clips_done": 1}'
    write_atomically(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("error", [OSError(28, "No space left"), KeyboardInterrupt()])
def test_an_error_while_writing_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, error: BaseException
) -> None:
    path = tmp_path / "model.distill"
    path.write_bytes(b"old")
    with pytest.raises(type(error)):
        with atomic_file(path) as f:
            f.write(b"half of the ne")
            raise error
    assert path.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [path]


def test_a_secret_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = write_atomically(tmp_path / "server.json", '{"token": "x"}', mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
