"""The prior's data: each file's codes through the frozen VQ-VAE, and windows of them.

Codes are extracted once per run, window by window exactly as the VQ-VAE saw its data
(fixed windows, the last one padded with silence), so the prior learns the codes the
VQ-VAE really produces, silence after a short sound included. A file's steps past its
end are padding: the prior trains on them (it must learn to end a sound) but reported
losses leave them out (see training/prior.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from distill.audio.dataset import SoundFile
from distill.audio.windows import fixed_windows, pick_take
from distill.models.rvqvae import ConvVQVAE

MAX_VAL_WINDOWS_PER_FILE = 8


class FileCodes(NamedTuple):
    """One file's codes."""

    sound: SoundFile
    codes: Tensor  # (t, q) long, t a whole number of VQ-VAE windows
    audible: int  # the first `audible` steps hold the sound; the rest is padding


class CodeBatch(NamedTuple):
    """Windows of codes and which of their steps count."""

    codes: Tensor  # (b, c, q) long
    valid: Tensor  # (b, c) float: 1 inside the file (audible or its padding), 0 past it
    audible: Tensor  # (b, c) float: 1 on audible steps

    def __len__(self) -> int:
        return self.codes.shape[0]

    def slice(self, start: int, stop: int) -> CodeBatch:
        return CodeBatch(self.codes[start:stop], self.valid[start:stop], self.audible[start:stop])

    def to(self, device: torch.device) -> CodeBatch:
        return CodeBatch(self.codes.to(device), self.valid.to(device), self.audible.to(device))


@torch.no_grad()
def extract_codes(vqvae: ConvVQVAE, sounds: Sequence[SoundFile]) -> list[FileCodes]:
    """Every file's codes, in the VQ-VAE's eval mode (no codebook updates)."""
    return [_file_codes(vqvae, sound, sound.load_mel()) for sound in sounds]


@torch.no_grad()
def extract_take_codes(
    vqvae: ConvVQVAE, sounds: Sequence[SoundFile], takes: Sequence[Sequence[np.ndarray]]
) -> list[list[FileCodes]]:
    """The codes of each file's takes (audio/augment.py), named by the file they came from."""
    return [
        [_file_codes(vqvae, sound, mel) for mel in mels]
        for sound, mels in zip(sounds, takes, strict=True)
    ]


def _file_codes(vqvae: ConvVQVAE, sound: SoundFile, mel: np.ndarray) -> FileCodes:
    vqvae.eval()
    config = vqvae.config
    pad = math.log(config.mel.log_floor)
    windows = fixed_windows([torch.from_numpy(mel)], config.window_frames, pad)
    indices = vqvae.quantize(vqvae.encode(windows)).indices  # (w, n, q)
    codes = indices.reshape(-1, config.rvq_levels).long()  # (w * n, q)
    audible = min(len(codes), math.ceil(mel.shape[1] / config.downsample))
    return FileCodes(sound, codes, audible)


def _window(item: FileCodes, start: int, steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """`steps` steps of one file from `start`, padded past its end with code 0."""
    piece = item.codes[start : start + steps]
    codes = torch.zeros(steps, item.codes.shape[1], dtype=torch.long)
    codes[: len(piece)] = piece
    positions = torch.arange(start, start + steps)
    valid = (positions < len(item.codes)).float()
    audible = (positions < item.audible).float()
    return codes, valid, audible


def _stack(pieces: list[tuple[Tensor, Tensor, Tensor]]) -> CodeBatch:
    codes, valid, audible = zip(*pieces, strict=True)
    return CodeBatch(torch.stack(codes), torch.stack(valid), torch.stack(audible))


def fixed_code_windows(
    files: Sequence[FileCodes], steps: int, max_per_file: int = MAX_VAL_WINDOWS_PER_FILE
) -> CodeBatch:
    """Each file's non-overlapping windows in order: validation, comparable every epoch."""
    pieces = []
    for item in files:
        count = min(max(1, math.ceil(len(item.codes) / steps)), max_per_file)
        pieces += [_window(item, i * steps, steps) for i in range(count)]
    return _stack(pieces)


class CodeCropSampler:
    """Random windows of codes; files drawn in proportion to their length in windows.

    `takes[i]` are the codes of file i's other takes (pitch-shifted): a window of file i
    comes from one of them TAKE_SHARE of the time, as the VQ-VAE's crops do, so the prior
    sees more than the same few sequences while the files themselves stay half of it."""

    def __init__(
        self,
        files: Sequence[FileCodes],
        steps: int,
        generator: torch.Generator,
        takes: Sequence[Sequence[FileCodes]] | None = None,
    ):
        self.files = list(files)
        self.steps = steps
        self.generator = generator
        self.takes = [list(t) for t in takes] if takes else [[] for _ in self.files]
        counts = [max(1, math.ceil(len(f.codes) / steps)) for f in self.files]
        self.natural_windows = sum(counts)
        self.weights = torch.tensor(counts, dtype=torch.float)

    def _pick(self, index: int) -> FileCodes:
        return pick_take(self.files[index], self.takes[index], self.generator)

    def batch(self, size: int) -> CodeBatch:
        chosen = torch.multinomial(self.weights, size, replacement=True, generator=self.generator)
        pieces = []
        for index in chosen.tolist():
            item = self._pick(index)
            slack = max(0, len(item.codes) - self.steps)
            start = int(torch.randint(0, slack + 1, (1,), generator=self.generator))
            pieces.append(_window(item, start, self.steps))
        return _stack(pieces)
