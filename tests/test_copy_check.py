"""The copy check: a replayed stretch of training codes is found, named and located."""

from __future__ import annotations

import numpy as np

from distill.models.copy_check import CopyChecker, step_keys

K = 8
SECONDS_PER_STEP = 0.5


def codes(*steps: tuple[int, int]) -> np.ndarray:
    return np.array(steps, dtype=np.int64)  # (t, q=2)


TRAINING = [
    codes((1, 1), (2, 2), (3, 3), (4, 4), (5, 5)),
    codes((0, 0), (0, 0), (6, 1), (6, 2), (6, 3), (6, 4), (0, 0)),  # (0, 0) is silence here
]
NAMES = ["a.wav", "sub/b.wav"]


def checker() -> CopyChecker:
    silence = step_keys(codes((0, 0)), K)
    return CopyChecker(TRAINING, NAMES, K, SECONDS_PER_STEP, silence.tolist())


def test_step_keys_differ_when_any_level_differs() -> None:
    keys = step_keys(codes((1, 2), (2, 1), (1, 2)), K)
    assert keys[0] == keys[2] and keys[0] != keys[1]


def test_a_replayed_stretch_is_found_with_its_file_and_offsets() -> None:
    clip = codes((7, 7), (6, 2), (6, 3), (6, 4), (7, 6))
    check = checker().check(clip)
    assert check.longest_run_steps == 3
    assert check.longest_run_seconds == 1.5
    assert check.longest_run_share == 3 / 5
    assert check.clip_offset_seconds == 0.5  # starts at clip step 1
    assert check.nearest_file == "sub/b.wav"
    assert check.nearest_offset_seconds == 1.5  # starts at step 3 of that file


def test_a_whole_copy_has_share_one() -> None:
    check = checker().check(TRAINING[0])
    assert check.longest_run_steps == 5 and check.longest_run_share == 1.0
    assert check.nearest_file == "a.wav" and check.nearest_offset_seconds == 0.0


def test_runs_never_cross_from_one_file_into_the_next() -> None:
    clip = codes((4, 4), (5, 5), (0, 0), (0, 0), (6, 1))  # a.wav's end, b.wav's start
    assert checker().check(clip).longest_run_steps == 2


def test_silence_is_not_a_copy() -> None:
    check = checker().check(codes((0, 0), (0, 0), (0, 0), (0, 0)))
    assert check.longest_run_steps == 0 and check.longest_run_share == 0.0


def test_with_no_shared_run_the_nearest_file_shares_the_most_steps() -> None:
    clip = codes((6, 4), (7, 7), (6, 1), (7, 7))  # b.wav's steps, never adjacent ones
    check = checker().check(clip)
    assert check.longest_run_steps == 1
    novel = checker().check(codes((7, 7), (7, 6)))
    assert novel.longest_run_steps == 0 and novel.nearest_file in NAMES
