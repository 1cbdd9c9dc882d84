"""Fixed-length training windows cut from variable-length log-mels.

Files shorter than a window are padded with silence (the log of the mel floor), never
dropped: a 20 ms click is as much a part of a drum kit as a 3 s crash. Every window comes
with its audible mask (1 on the file's own frames, 0 on the padding), so that losses,
metrics and code counts can leave the padding out. Training draws
random crops each epoch, so a small set still gives varied batches; validation uses
fixed, non-overlapping windows so its numbers are comparable from epoch to epoch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import NamedTuple, TypeVar

import torch
from torch import Tensor

T = TypeVar("T")


def split_files(items: Sequence[T], val_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Split by file, not by window, so no validation window overlaps a training one.

    A single file is used for both (there is nothing else to validate on); otherwise at
    least one file is held out and at least one kept for training.
    """
    if len(items) == 1:
        return list(items), list(items)
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_val = min(len(items) - 1, max(1, round(len(items) * val_fraction)))
    val_idx = set(order[:n_val])
    train = [x for i, x in enumerate(items) if i not in val_idx]
    val = [x for i, x in enumerate(items) if i in val_idx]
    return train, val


def window_count(frames: int, window: int) -> int:
    """Non-overlapping windows a file of `frames` gives; at least one (padded)."""
    return max(1, math.ceil(frames / window))


def crop(mel: Tensor, start: int, window: int, pad_value: float) -> Tensor:
    """(m, t) -> (m, window) from `start`, padded with `pad_value` past the end."""
    piece = mel[:, start : start + window]
    if piece.shape[1] < window:
        pad = piece.new_full((mel.shape[0], window - piece.shape[1]), pad_value)
        piece = torch.cat([piece, pad], dim=1)
    return piece


class Crops(NamedTuple):
    """Windows of log-mel and which of their frames are the sound's own."""

    mels: Tensor  # (b, m, window)
    audible: Tensor  # (b, window) float: 1 on the file's frames, 0 on padding

    def to(self, device: torch.device) -> Crops:
        return Crops(self.mels.to(device), self.audible.to(device))


def audible_mask(frames: int, start: int, window: int) -> Tensor:
    """(window,) float: 1 where frame start + i lies inside a file of `frames` frames."""
    return (torch.arange(start, start + window) < frames).float()


def fixed_window_masks(
    frame_counts: Sequence[int], window: int, max_per_file: int | None = None
) -> Tensor:
    """(N, window): the audible masks of fixed_windows over files of these lengths."""
    masks = []
    for frames in frame_counts:
        count = window_count(frames, window)
        if max_per_file is not None:
            count = min(count, max_per_file)
        masks += [audible_mask(frames, i * window, window) for i in range(count)]
    return torch.stack(masks)


def fixed_windows(
    mels: Sequence[Tensor], window: int, pad_value: float, max_per_file: int | None = None
) -> Tensor:
    """(N, m, window): each file's non-overlapping windows in order, the last one padded."""
    pieces = []
    for mel in mels:
        count = window_count(mel.shape[1], window)
        if max_per_file is not None:
            count = min(count, max_per_file)
        pieces += [crop(mel, i * window, window, pad_value) for i in range(count)]
    return torch.stack(pieces)


TAKE_SHARE = 0.5  # of crops drawn from a file's takes (pitch-shifted), when it has some
CONTEXT_SHARE = 0.3  # of crops that put the sound after silence or after another sound
MAX_LEAD = 0.5  # the most silence put ahead of a sound, as a share of the window


def pick_take(own: T, takes: Sequence[T], generator: torch.Generator) -> T:
    """A file itself, or one of its takes TAKE_SHARE of the time (when it has any): how
    both the VQ-VAE's crops and the prior's windows draw from an augmented set."""
    if takes and float(torch.rand((), generator=generator)) < TAKE_SHARE:
        return takes[int(torch.randint(0, len(takes), (1,), generator=generator))]
    return own


class CropSampler:
    """Random training crops; files are drawn in proportion to their length in windows.

    `takes[i]` are other versions of file i (audio/augment.py: pitch-shifted): a crop of
    file i comes from one of them TAKE_SHARE of the time, so the set sounds as varied as
    its takes but its own files stay half of what is seen.

    With `context`, CONTEXT_SHARE of the crops put the sound where a user will meet it,
    not on the window's first frame: after up to MAX_LEAD of a window of silence, or right
    after the end of another training sound. A model that only ever saw sounds start on
    frame 0 codes a hit after silence as loud noise (bench/context.py). The silence and the
    other sound ahead count as audible: the model must give them back too.
    """

    def __init__(
        self,
        mels: Sequence[Tensor],
        window: int,
        pad_value: float,
        generator: torch.Generator,
        takes: Sequence[Sequence[Tensor]] | None = None,
        context: bool = False,
    ):
        self.mels = list(mels)
        self.window = window
        self.pad_value = pad_value
        self.generator = generator
        self.takes = [list(t) for t in takes] if takes else [[] for _ in self.mels]
        self.context = context
        counts = [window_count(m.shape[1], window) for m in self.mels]
        self.natural_windows = sum(counts)
        self.weights = torch.tensor(counts, dtype=torch.float)

    def _uniform(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def _pick(self, index: int) -> Tensor:
        return pick_take(self.mels[index], self.takes[index], self.generator)

    def _ahead(self) -> Tensor:
        """What goes before the sound in a context crop: silence, or another sound's end."""
        if self._uniform() < 0.5 or len(self.mels) < 2:
            frames = int(
                torch.randint(1, int(self.window * MAX_LEAD) + 1, (1,), generator=self.generator)
            )
            return torch.full((self.mels[0].shape[0], frames), self.pad_value)
        other = self._pick(int(torch.randint(0, len(self.mels), (1,), generator=self.generator)))
        frames = int(torch.randint(1, self.window // 2 + 1, (1,), generator=self.generator))
        return other[:, -frames:]

    def batch(self, size: int) -> Crops:
        """`size` random windows and their audible masks."""
        files = torch.multinomial(self.weights, size, replacement=True, generator=self.generator)
        pieces, masks = [], []
        for f in files.tolist():
            mel = self._pick(f)
            if self.context and self._uniform() < CONTEXT_SHARE:
                ahead = self._ahead()
                joined = torch.cat([ahead, mel], dim=1)
                pieces.append(crop(joined, 0, self.window, self.pad_value))
                masks.append(audible_mask(joined.shape[1], 0, self.window))
                continue
            slack = max(0, mel.shape[1] - self.window)
            start = int(torch.randint(0, slack + 1, (1,), generator=self.generator))
            pieces.append(crop(mel, start, self.window, self.pad_value))
            masks.append(audible_mask(mel.shape[1], start, self.window))
        return Crops(torch.stack(pieces), torch.stack(masks))


def fixed_crops(
    mels: Sequence[Tensor], window: int, pad_value: float, max_per_file: int | None = None
) -> Crops:
    """fixed_windows with their audible masks: what evaluation and health count over."""
    return Crops(
        fixed_windows(mels, window, pad_value, max_per_file),
        fixed_window_masks([m.shape[1] for m in mels], window, max_per_file),
    )
