"""More takes than the user gave: each training file pitch-shifted, as a sampler would.

Why: a 14-hit kit gives the VQ-VAE 14 pitches and timbres, so a held-out sound decodes at
two or more times the true-mel ceiling, and it gives the prior 14 code sequences, which it
learns by heart within a few epochs. A pitch shift by resampling (tape-style: up is also
shorter, as on a sampler's keyboard) makes each file a handful of plausible new ones: a
snare a semitone up is still a snare. Only small and mid-sized sets get them (up to
`AUGMENT_MAX_FILES` files): a large set has its own variety, and its scan would grow by
`len(PITCH_SHIFTS)` times for little gain.

The shifted log-mels live in the mel cache beside the file's own (same key, a suffix per
shift), so a second run reads them back; they are made from the prepared audio (trimmed,
peak-normalised, at the model's rate) exactly as the file's own mel is.
"""

from __future__ import annotations

import numpy as np
import soxr
import torch

from distill.audio.dataset import SoundFile, load_prepared
from distill.audio.mel import MelSpectrogram
from distill.audio.mel_config import MelConfig
from distill.files import atomic_file

PITCH_SHIFTS = (-2, -1, 1, 2)  # semitones; each training file gets one take per shift
AUGMENT_MAX_FILES = 100  # sets larger than this train on their own files only


def augments(file_count: int) -> bool:
    """Whether a set of `file_count` files trains on pitch-shifted takes too."""
    return file_count <= AUGMENT_MAX_FILES


def pitch_shift(audio: np.ndarray, semitones: float) -> np.ndarray:
    """Tape-style shift: resampled so that, played at the same rate, it sounds `semitones`
    higher (and proportionally shorter)."""
    ratio = 2.0 ** (semitones / 12.0)
    shifted = soxr.resample(audio, 1.0, 1.0 / ratio, quality="HQ")
    return np.clip(shifted, -1.0, 1.0).astype(np.float32, copy=False)


def pitch_shifted_mels(sounds: list[SoundFile], config: MelConfig) -> list[list[np.ndarray]]:
    """For each sound, its log-mel at every PITCH_SHIFTS step ((n_mels, frames) float32),
    read from the mel cache or made once and cached. A file that no longer decodes gets
    none (it was usable at scan time; training goes on without its takes)."""
    mel = MelSpectrogram(config)
    result = []
    for sound in sounds:
        paths = [_shift_path(sound, s) for s in PITCH_SHIFTS]
        if all(p.exists() for p in paths):
            result.append([np.load(p, allow_pickle=False) for p in paths])
            continue
        audio, _ = load_prepared(sound.path, config.sample_rate)
        if audio is None:
            result.append([])
            continue
        takes = []
        for shift, path in zip(PITCH_SHIFTS, paths, strict=True):
            with torch.no_grad():
                log_mel = mel(torch.from_numpy(pitch_shift(audio, shift))).numpy()
            log_mel = log_mel.astype(np.float32)
            with atomic_file(path) as f:
                np.save(f, log_mel, allow_pickle=False)
            takes.append(log_mel)
        result.append(takes)
    return result


def _shift_path(sound: SoundFile, semitones: int):
    return sound.mel_path.with_name(f"{sound.mel_path.stem}.pitch{semitones:+d}.npy")
