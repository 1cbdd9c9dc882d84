"""How long a run has left (distill/progress.py): the one estimate the CLI and pages show."""

from __future__ import annotations

import pytest

from distill.progress import duration, epochs_remaining, remaining_seconds


def test_the_time_left_goes_at_the_pace_so_far() -> None:
    assert remaining_seconds(20, 100, 10.0) == pytest.approx(40.0)  # decoder stage steps
    assert remaining_seconds(100, 100, 10.0) == 0.0
    assert remaining_seconds(0, 100, 10.0) is None  # no pace yet: no figure, not a guess


def test_epochs_left_go_at_the_latest_epochs_mean_less_the_current_ones_share() -> None:
    assert epochs_remaining([10.0, 20.0], 3, within=0.5) == pytest.approx(37.5)
    # before any epoch finished: the current epoch's own pace (a quarter took 5 s)
    assert epochs_remaining([], 2, within=0.25, since_start=5.0) == pytest.approx(35.0)
    assert epochs_remaining([], 2) is None


def test_durations_read_as_a_person_says_them() -> None:
    assert [duration(s) for s in (None, 45, 200, 3900)] == ["-", "45 s", "3 min 20 s", "1 h 05 min"]
