"""One-shots stay one-shots: where a sampled sound starts and ends, and what is silence.

A prior trained on short files learns each one as: the start token, the sound from its
first step, then the VQ-VAE's silence codes that pad it to a window (prior_data.py: the
prior trains on that padding, so ending a sound is something it learns). A one-shot clip
is therefore the stretch from its first sounding step to where the prior, having made a
sound, emits END_SILENT_STEPS steps of silence codes: the point where, in training, its
file ended. The audio is then cut there and its decayed tail (under DECAYED_DB of the
clip's peak) trimmed, with a FADE_SECONDS fade so the cut does not click. A clip that
never falls silent runs to the length asked for.

A one-shot also starts on its sound, as the training files do (the scan trims their
leading silence): a first sounding step can still decode to tens of milliseconds of
near-silence, which a sampler would play as latency. So the clip starts ONSET_PREROLL
before its first sample within ONSET_DB of its peak. And it plays at the level of the
sounds it learned from: the scan peak-normalises every training file to PEAK_TARGET, so
a one-shot is brought to the same peak (a quiet draw of a snare is still a snare, and a
sampler user would normalise it anyway); silence stays silence.

A clip is silent when its RMS is under SILENT_RMS (-60 dBFS: the issue's silent clip had
2e-5) or it has no sounding step at all; generate.py draws such a clip again from the
same generator, at most MAX_TRIES times in all, and reports it when every try was silent.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from distill.audio.dataset import PEAK_TARGET
from distill.models.copy_check import step_keys

END_SILENT_STEPS = 2  # this many silence steps after a sound end it
DECAYED_DB = -50.0  # a tail under this many dB below the peak has decayed
FADE_SECONDS = 0.005  # fade-out at the cut
ONSET_DB = -40.0  # a one-shot starts where it first comes within this many dB of its peak ...
ONSET_PREROLL = 0.002  # ... this many seconds earlier, so the attack keeps its first edge
SILENT_RMS = 1e-3  # a clip quieter than this (RMS, full scale 1) is silence
MAX_TRIES = 4  # draws per clip before a silent one is reported


class Span(NamedTuple):
    start: int  # first sounding step
    end: int  # one past the last step of the sound


def sound_span(codes: np.ndarray, silence_keys: np.ndarray, codebook_size: int) -> Span:
    """(t, q) codes -> the steps of the one sound they start with; (0, 0) if all silence."""
    silent = np.isin(step_keys(codes, codebook_size), silence_keys)
    sounding = np.flatnonzero(~silent)
    if sounding.size == 0:
        return Span(0, 0)
    start = int(sounding[0])
    run = 0
    for step in range(start, len(silent)):
        run = run + 1 if silent[step] else 0
        if run == END_SILENT_STEPS:
            return Span(start, step + 1 - END_SILENT_STEPS)
    return Span(start, len(silent))


def trim_decayed(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut the tail under DECAYED_DB of the peak and fade the new end out."""
    peak = float(np.abs(audio).max(initial=0.0))
    if peak == 0.0:
        return audio
    loud = np.flatnonzero(np.abs(audio) >= peak * 10 ** (DECAYED_DB / 20))
    trimmed = audio[: int(loud[-1]) + 1].copy()
    fade = min(len(trimmed), max(1, round(FADE_SECONDS * sample_rate)))
    trimmed[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=trimmed.dtype)
    return trimmed


def trim_leading(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Drop what comes before the sound's onset (ONSET_DB under the peak, less a preroll)."""
    peak = float(np.abs(audio).max(initial=0.0))
    if peak == 0.0:
        return audio
    onset = int(np.flatnonzero(np.abs(audio) >= peak * 10 ** (ONSET_DB / 20))[0])
    return audio[max(0, onset - round(ONSET_PREROLL * sample_rate)) :]


def normalise_peak(audio: np.ndarray) -> np.ndarray:
    """To the training files' peak (PEAK_TARGET); a silent clip is left as it is."""
    peak = float(np.abs(audio).max(initial=0.0))
    if is_silent(audio) or peak == 0.0:
        return audio
    return (audio * (PEAK_TARGET / peak)).astype(audio.dtype, copy=False)


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0


def is_silent(audio: np.ndarray) -> bool:
    return rms(audio) < SILENT_RMS
