"""Training windows: short files are padded, not dropped; splits never leak."""

from __future__ import annotations

import torch

from distill.audio.windows import (
    CropSampler,
    crop,
    fixed_crops,
    fixed_windows,
    split_files,
    window_count,
)


def test_short_file_is_padded_with_the_floor_value() -> None:
    mel = torch.ones(3, 5)
    piece = crop(mel, 0, 8, pad_value=-11.5)
    assert piece.shape == (3, 8)
    assert torch.equal(piece[:, :5], mel)
    assert (piece[:, 5:] == -11.5).all()


def test_fixed_windows_cover_each_file_and_pad_the_last() -> None:
    mels = [torch.zeros(2, 10), torch.ones(2, 3)]
    windows = fixed_windows(mels, 4, pad_value=-1.0)
    assert windows.shape == (3 + 1, 2, 4)
    assert window_count(10, 4) == 3 and window_count(3, 4) == 1
    assert (windows[2, :, 2:] == -1).all()
    assert fixed_windows(mels, 4, -1.0, max_per_file=1).shape[0] == 2


def test_split_is_by_file_deterministic_and_never_empty() -> None:
    items = list(range(20))
    train, val = split_files(items, 0.15, seed=1)
    assert not set(train) & set(val)
    assert sorted(train + val) == items
    assert len(val) == 3
    assert split_files(items, 0.15, seed=1) == (train, val)
    assert split_files([7], 0.15, seed=0) == ([7], [7])
    train2, val2 = split_files([1, 2], 0.9, seed=0)
    assert len(train2) == 1 and len(val2) == 1


def test_crop_sampler_is_reproducible_from_its_generator() -> None:
    mels = [torch.randn(4, 50), torch.randn(4, 3)]
    a = CropSampler(mels, 8, -5.0, torch.Generator().manual_seed(3)).batch(6)
    b = CropSampler(mels, 8, -5.0, torch.Generator().manual_seed(3)).batch(6)
    assert a.mels.shape == (6, 4, 8)
    assert torch.equal(a.mels, b.mels) and torch.equal(a.audible, b.audible)


def test_crops_mark_the_padding_of_a_short_file_as_not_audible() -> None:
    mels = [torch.randn(4, 3)]
    crops = CropSampler(mels, 8, -5.0, torch.Generator().manual_seed(0)).batch(2)
    assert crops.audible.tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]] * 2
    assert torch.all(crops.mels[:, :, 3:] == -5.0)
    fixed = fixed_crops([torch.randn(4, 10)], 8, -5.0)
    assert fixed.audible.sum(dim=1).tolist() == [8, 2]
