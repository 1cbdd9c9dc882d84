"""Names are matched whole and user files never leave the data directory (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.paths import check_model_name
from distill.server.files import FileRefused, generated_file, run_file


def test_a_name_ending_in_a_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="bad model name"):
        check_model_name("kicks\n")


def test_a_run_id_ending_in_a_newline_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileRefused, match="bad run id"):
        run_file(tmp_path, "20260101-000000-abcd\n", "previews/a.png")


def test_a_symlinked_run_or_history_folder_is_not_followed(tmp_path: Path) -> None:
    home, outside = tmp_path / "home", tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(b"secret")
    (outside / "x.wav").write_bytes(b"secret")
    (home / "runs").mkdir(parents=True)
    (home / "generated").mkdir()
    (home / "runs" / "r1").symlink_to(outside)
    (home / "generated" / "m1").symlink_to(outside)
    with pytest.raises(FileRefused):
        run_file(home, "r1", "x.png")
    with pytest.raises(FileRefused):
        generated_file(home, "m1", "x.wav")
