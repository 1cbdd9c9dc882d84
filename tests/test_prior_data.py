"""The prior's windows: what it trains on, and the takes it draws from."""

from __future__ import annotations

from pathlib import Path

import torch

from distill.audio.dataset import SoundFile
from distill.training.prior_data import (
    END_STEPS_LEARNED,
    CodeCropSampler,
    FileCodes,
    fixed_code_windows,
)

SOUND = SoundFile(Path("hit.wav"), 0.3, 14, Path("hit.npy"))


def _hit(audible: int, steps: int, value: int = 5) -> FileCodes:
    codes = torch.zeros(steps, 2, dtype=torch.long)
    codes[:audible] = value
    return FileCodes(SOUND, codes, audible)


def test_a_short_sound_trains_on_its_steps_and_its_end_not_the_whole_padding() -> None:
    windows = fixed_code_windows([_hit(audible=7, steps=64)], 64)
    valid, audible = windows.valid[0], windows.audible[0]
    assert int(audible.sum()) == 7
    assert int(valid.sum()) == 7 + END_STEPS_LEARNED
    assert valid[: 7 + END_STEPS_LEARNED].all() and not valid[7 + END_STEPS_LEARNED :].any()


def test_a_long_sound_is_valid_to_the_end_of_its_codes() -> None:
    windows = fixed_code_windows([_hit(audible=62, steps=64)], 64)
    assert int(windows.valid[0].sum()) == 64  # its codes end before the end steps would


def test_windows_come_from_a_files_takes_about_half_the_time() -> None:
    own = _hit(7, 16, value=1)
    takes = [_hit(7, 16, value=v) for v in (2, 3, 4, 5)]
    sampler = CodeCropSampler([own], 16, torch.Generator().manual_seed(0), [takes])
    first = sampler.batch(400).codes[:, 0, 0]
    assert 0.4 < float((first != 1).float().mean()) < 0.6
    assert set(first.unique().tolist()) == {1, 2, 3, 4, 5}
    assert sampler.natural_windows == 1  # an epoch's length is the set's own, not its takes'
