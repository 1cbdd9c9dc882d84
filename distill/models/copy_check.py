"""The copy check: is a generated clip new, or a stretch of the training set replayed?

A prior that memorised its data plays back training codes verbatim. So for each clip we
find the longest run of consecutive time steps whose codes (every level) equal a run in
one training file, and name that file: the nearest training clip, which a listener can
play beside the generated one. A run of a few steps happens by chance; a run of most of
the clip is a copy.

Silence does not count: every short file is padded with silence up to a whole window,
so silent steps match everywhere and would make every quiet clip look copied. Steps
whose codes are those of pure silence never match.

When no step matches at all, the nearest file is the one sharing the most distinct
steps with the clip (anywhere, in any order), so there is always something to compare.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from distill.events import CopyCheck

if TYPE_CHECKING:
    import torch

    from distill.models.rvqvae import ConvVQVAE

_NO_MATCH_REFERENCE = -1  # file boundaries and silence in the training codes
_NO_MATCH_CLIP = -2  # silence in the clip: differs from every reference key


def step_keys(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """(t, q) codes -> (t,) one int64 per time step, equal iff every level's code is."""
    codes = np.asarray(codes, dtype=np.int64)
    weights = codebook_size ** np.arange(codes.shape[1], dtype=np.int64)
    return codes @ weights


class CopyChecker:
    """The training codes of a prior, ready to compare generated clips against."""

    def __init__(
        self,
        file_codes: list[np.ndarray],
        file_names: list[str],
        codebook_size: int,
        seconds_per_step: float,
        silence_keys: Iterable[int] = (),
    ):
        self.names = file_names
        self.codebook_size = codebook_size
        self.seconds_per_step = seconds_per_step
        self.silence = np.array(sorted(set(silence_keys)), dtype=np.int64)
        keys = [step_keys(c, codebook_size) for c in file_codes]
        self.file_keys = [k[~np.isin(k, self.silence)] for k in keys]  # for the fallback
        # All files in one array, each followed by a boundary that matches nothing.
        pieces: list[np.ndarray] = []
        starts: list[int] = []
        position = 0
        for k in keys:
            starts.append(position)
            pieces.append(np.where(np.isin(k, self.silence), _NO_MATCH_REFERENCE, k))
            pieces.append(np.array([_NO_MATCH_REFERENCE], dtype=np.int64))  # the boundary
            position += len(k) + 1
        self.reference = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
        self.starts = np.array(starts, dtype=np.int64)

    def check(self, codes: np.ndarray) -> CopyCheck:
        """(t, q) codes of one generated clip -> its CopyCheck."""
        clip = step_keys(codes, self.codebook_size)
        clip = np.where(np.isin(clip, self.silence), _NO_MATCH_CLIP, clip)
        length, clip_end, reference_end = self._longest_run(clip)
        if length > 0:
            file = int(np.searchsorted(self.starts, reference_end, side="right")) - 1
            file_start = reference_end - length + 1 - int(self.starts[file])
        else:
            file, file_start = self._most_shared(clip), 0
        steps = max(len(clip), 1)
        return CopyCheck(
            longest_run_steps=length,
            longest_run_seconds=length * self.seconds_per_step,
            longest_run_share=length / steps,
            clip_offset_seconds=(clip_end - length + 1) * self.seconds_per_step if length else 0.0,
            nearest_file=self.names[file] if file >= 0 else "",
            nearest_offset_seconds=file_start * self.seconds_per_step,
        )

    def _longest_run(self, clip: np.ndarray) -> tuple[int, int, int]:
        """(length, clip end, reference end) of the longest common run of keys.

        The classic longest-common-substring table, one clip step per row: row i holds,
        for every reference position, the run of matches ending there. O(t * m) time in
        vectorised steps, O(m) memory.
        """
        reference = self.reference
        run = np.zeros(len(reference), dtype=np.int64)
        best, best_clip_end, best_reference_end = 0, 0, 0
        for i, key in enumerate(clip):
            matches = reference == key
            previous = np.concatenate(([0], run[:-1]))
            run = np.where(matches, previous + 1, 0)
            if run.size and (top := int(run.max())) > best:
                best, best_clip_end, best_reference_end = top, i, int(run.argmax())
        return best, best_clip_end, best_reference_end

    def _most_shared(self, clip: np.ndarray) -> int:
        """The file sharing the most distinct steps with the clip; -1 with no files."""
        if not self.file_keys:
            return -1
        distinct = np.unique(clip)
        shared = [np.isin(distinct, keys).sum() for keys in self.file_keys]
        return int(np.argmax(shared))


def training_copy_checker(
    vqvae: ConvVQVAE,
    codes: Sequence[torch.Tensor],
    names: list[str],
    codebook_size: int,
    seconds_per_step: float,
) -> CopyChecker:
    """The training codes (each (t, q)), with the VQ-VAE's codes for silence left out."""
    from distill.models.rvqvae import silence_codes  # torch: only where a model is loaded

    silence = step_keys(silence_codes(vqvae).numpy(), codebook_size)
    return CopyChecker(
        [c.numpy() for c in codes], names, codebook_size, seconds_per_step, silence.tolist()
    )
