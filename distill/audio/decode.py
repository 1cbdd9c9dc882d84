"""Turning a user's sound files into mono float audio at one sample rate, and back.

Users point distill at folders of whatever they have lying around, so decoding
must fail politely: every failure becomes an `AudioDecodeError` carrying a short
phrase that can be shown next to the file name, and nothing from soundfile or
soxr leaks out to crash a long dataset scan.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from distill.audio.formats import SUPPORTED_EXTENSIONS
from distill.files import write_atomically


class AudioDecodeError(Exception):
    """A file could not be turned into audio; `reason` is a short human phrase."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason}")

    def __reduce__(self) -> tuple[type[AudioDecodeError], tuple[Path, str]]:
        # Keeps the exception picklable across DataLoader / process-pool workers,
        # which re-create it from `args` and would otherwise lose `reason`.
        return (type(self), (self.path, self.reason))


def _soundfile_message(exc: Exception, path: Path) -> str:
    """The informative tail of a soundfile error, without the repeated file path.

    libsndfile answers a file with an audio extension but no audio in it (a text file
    named .mp3) with "File does not exist or is not a regular file (possibly a pipe?)",
    which is false and sends the user looking in the wrong place: say what it is.
    """
    message = getattr(exc, "error_string", None) or str(exc)
    message = str(message).strip().rstrip(".")
    if "does not exist" in message and path.is_file():
        return f"not audio that soundfile can read (no {path.suffix.lstrip('.').upper()} data)"
    return message or type(exc).__name__


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null for the duration.

    libsndfile's MP3 decoder (mpg123) prints "Note: Illegal Audio-MPEG-Header ..." and
    "Note: Trying to resync..." straight to fd 2 for every odd file, which no Python-level
    redirect catches; a scan of a folder would fill the terminal with them. The reason a
    file is skipped comes back through the exception instead.
    """
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def load_audio(path: Path | str, sample_rate: int) -> np.ndarray:
    """Decode any supported file to float32 mono in [-1, 1] at `sample_rate`.

    Channels are averaged and soxr ('HQ') does the resampling. Truncated files whose
    header is intact yield the frames that are present: for a training set a slightly
    short clip is more useful than a rejection.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    mono, source_rate = decode_audio(path)
    return resample(mono, source_rate, sample_rate, path)


def stated_seconds(path: Path | str) -> float | None:
    """How long the file says it is (its header), without decoding it; None when it says
    nothing usable (then decode_audio gives the reason)."""
    try:
        with _quiet_stderr():
            info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, OSError, EOFError):
        return None
    if info.frames <= 0 or info.samplerate <= 0:
        return None
    return info.frames / info.samplerate


def decode_audio(path: Path | str) -> tuple[np.ndarray, int]:
    """float32 mono at the file's own rate, and that rate.

    Kept apart from resampling so a caller can judge a sound (silence, length) before a
    resampler's ringing smears a one-sample click over milliseconds.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise AudioDecodeError(path, f"unsupported format ({suffix or 'no extension'})")

    try:
        if path.stat().st_size == 0:
            raise AudioDecodeError(path, "empty (a file of 0 bytes)")
        with _quiet_stderr():
            data, source_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, OSError, EOFError) as exc:
        raise AudioDecodeError(path, f"unreadable: {_soundfile_message(exc, path)}") from exc

    if data.shape[0] == 0:
        raise AudioDecodeError(path, "empty (no samples)")

    # Clean before resampling: one NaN would smear across the whole filter length.
    mono = np.nan_to_num(data.mean(axis=1), nan=0.0, posinf=0.0, neginf=0.0)
    return np.ascontiguousarray(mono, dtype=np.float32), int(source_rate)


def resample(
    mono: np.ndarray, source_rate: int, sample_rate: int, path: Path | str = "audio"
) -> np.ndarray:
    """soxr HQ resampling, clipped to [-1, 1]; `path` only names the file in errors."""
    if source_rate != sample_rate:
        try:
            mono = soxr.resample(mono, source_rate, sample_rate, quality="HQ")
        except (RuntimeError, ValueError, TypeError) as exc:
            raise AudioDecodeError(Path(path), f"resampling failed: {exc}") from exc
        if mono.shape[0] == 0:
            raise AudioDecodeError(Path(path), "empty (no samples)")

    # Float files may exceed full scale and resampling can overshoot slightly;
    # downstream code relies on [-1, 1].
    return np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)


def write_wav(path: Path | str, audio: np.ndarray | torch.Tensor, sample_rate: int) -> None:
    """16-bit PCM WAV, clipped to [-1, 1]; creates parent folders.

    Written whole, atomically (distill/files.py): a listener never gets half a WAV, and a
    full disk says which file did not fit. Accepts mono audio as (samples,) or with one singleton axis, e.g. a (1, samples)
    tensor straight out of a model.
    """
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().to("cpu", torch.float32).numpy()
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim == 2 and 1 in samples.shape:
        samples = samples.reshape(-1)
    if samples.ndim != 1:
        raise ValueError(f"write_wav expects mono audio, got shape {tuple(samples.shape)}")
    # PCM conversion of NaN is undefined; treat non-finite samples as silence,
    # as load_audio does.
    samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    samples = np.clip(samples, -1.0, 1.0)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, subtype="PCM_16", format="WAV")
    write_atomically(path, buffer.getvalue())
