"""The prior's windows: the takes it draws from."""

from __future__ import annotations

from pathlib import Path

import torch

from distill.audio.dataset import SoundFile
from distill.training.prior_data import CodeCropSampler, FileCodes

SOUND = SoundFile(Path("hit.wav"), 0.3, 14, Path("hit.npy"))


def _hit(audible: int, steps: int, value: int = 5) -> FileCodes:
    codes = torch.zeros(steps, 2, dtype=torch.long)
    codes[:audible] = value
    return FileCodes(SOUND, codes, audible)


def test_windows_come_from_a_files_takes_about_half_the_time() -> None:
    own = _hit(7, 16, value=1)
    takes = [_hit(7, 16, value=v) for v in (2, 3, 4, 5)]
    sampler = CodeCropSampler([own], 16, torch.Generator().manual_seed(0), [takes])
    first = sampler.batch(400).codes[:, 0, 0]
    assert 0.4 < float((first != 1).float().mean()) < 0.6
    assert set(first.unique().tolist()) == {1, 2, 3, 4, 5}
    assert sampler.natural_windows == 1  # an epoch's length is the set's own, not its takes'
