"""A dataset is a folder of sounds: scan it, explain what is skipped, cache its log-mels.

Scanning decodes each file once, trims leading and trailing silence, peak-normalises it
and stores its log-mel in the mel cache, keyed on the file's path, size and mtime and on
the front-end's parameters. A second scan of an unchanged folder reads only the cache.
Skip reasons are cached too, so an unreadable file is not decoded again either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from distill.audio.decode import AudioDecodeError, decode_audio, resample
from distill.audio.formats import find_audio_files, is_supported
from distill.audio.mel import MelSpectrogram
from distill.audio.mel_config import MelConfig
from distill.events import SkippedFile
from distill.files import atomic_file, write_atomically

SILENCE_PEAK = 10 ** (-70 / 20)  # a file whose peak is under -70 dBFS is silent
TRIM_BELOW_PEAK_DB = 50.0  # trim leading/trailing samples 50 dB under the file's peak
MIN_SECONDS = 0.005  # what is left after trimming must be at least this long
PEAK_TARGET = 0.9  # files are peak-normalised so level differences do not dominate the loss
PREP_VERSION = 1  # bump when trimming or normalisation change, to invalidate the cache
REASONS_VERSION = 2  # bump when skip reasons are worded anew: skipped files are decoded again


class DatasetError(ValueError):
    """The folder cannot be used for training (missing, or no usable file in it)."""


@dataclass(frozen=True)
class SoundFile:
    """A usable file and where its cached log-mel lives."""

    path: Path
    seconds: float  # after trimming
    frames: int  # mel frames
    mel_path: Path

    def load_mel(self) -> np.ndarray:
        """(n_mels, frames) float32."""
        return np.load(self.mel_path, allow_pickle=False)


@dataclass
class ScanReport:
    """What a folder holds: usable files, skipped files with reasons, cache use."""

    root: Path
    usable: list[SoundFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    cache_hits: int = 0

    @property
    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.usable)

    def fingerprint(self) -> str:
        """Identifies this exact set of files (names, sizes, mtimes) for the model card."""
        digest = hashlib.sha256()
        for sound in self.usable:
            stat = sound.path.stat()
            rel = (
                sound.path.relative_to(self.root)
                if sound.path.is_relative_to(self.root)
                else sound.path
            )
            digest.update(f"{rel}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]


def scan_dataset(root: Path | str, mel_config: MelConfig, cache_dir: Path) -> ScanReport:
    """Decode (or read from cache) every file under `root`; never raises for one bad file."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    cache_dir.mkdir(parents=True, exist_ok=True)
    report = ScanReport(root=root)
    mel = MelSpectrogram(mel_config)
    for path in find_audio_files(root):
        target = path.resolve()
        if not target.is_relative_to(root):  # a link out: what is outside stays outside
            report.skipped.append(SkippedFile(str(path), f"links outside the folder ({target})"))
            continue
        if not is_supported(path):
            report.skipped.append(
                SkippedFile(str(path), f"unsupported format ({path.suffix or 'no extension'})")
            )
            continue
        key = _cache_key(path, mel_config)
        meta_path, mel_path = cache_dir / f"{key}.json", cache_dir / f"{key}.npy"
        cached = _read_cache_meta(meta_path, mel_path)
        if cached is None:
            cached = _prepare(path, mel_config, mel, meta_path, mel_path)
        else:
            report.cache_hits += 1
        if cached.get("skip_reason"):
            report.skipped.append(SkippedFile(str(path), cached["skip_reason"]))
        else:
            report.usable.append(SoundFile(path, cached["seconds"], cached["frames"], mel_path))
    return report


def require_usable(report: ScanReport) -> None:
    """Zero usable files is a clear error naming the folder and what was wrong."""
    if report.usable:
        return
    if not report.skipped:
        raise DatasetError(f"no audio files found in {report.root}")
    reasons = "; ".join(f"{Path(s.path).name}: {s.reason}" for s in report.skipped[:5])
    more = f" (and {len(report.skipped) - 5} more)" if len(report.skipped) > 5 else ""
    raise DatasetError(f"no usable audio in {report.root}: {reasons}{more}")


def trim_silence(audio: np.ndarray) -> np.ndarray:
    """Drop leading and trailing samples more than TRIM_BELOW_PEAK_DB under the peak."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    threshold = peak * 10 ** (-TRIM_BELOW_PEAK_DB / 20)
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if loud.size == 0:
        return audio[:0]
    return audio[loud[0] : loud[-1] + 1]


def prepare_audio(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray | None, str | None]:
    """Trimmed, peak-normalised audio, or None and the reason it cannot be used."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < SILENCE_PEAK:
        return None, "silent"
    trimmed = trim_silence(audio)
    if trimmed.size < MIN_SECONDS * sample_rate:
        return (
            None,
            f"too short after trimming silence ({trimmed.size / sample_rate * 1000:.0f} ms)",
        )
    return (trimmed * (PEAK_TARGET / peak)).astype(np.float32), None


def load_prepared(path: Path, sample_rate: int) -> tuple[np.ndarray | None, str | None]:
    """A file as training hears it (decoded, trimmed, peak-normalised, resampled), or
    None and the reason it cannot be used."""
    try:
        audio, source_rate = decode_audio(path)
        prepared, reason = prepare_audio(audio, source_rate)  # judged before resampling
        if prepared is not None:
            prepared = resample(prepared, source_rate, sample_rate, path)
    except AudioDecodeError as error:
        return None, error.reason
    return prepared, reason


def _prepare(
    path: Path, config: MelConfig, mel: MelSpectrogram, meta_path: Path, mel_path: Path
) -> dict:
    prepared, reason = load_prepared(path, config.sample_rate)
    if prepared is None:
        meta: dict[str, object] = {"skip_reason": reason, "reasons": REASONS_VERSION}
    else:
        with torch.no_grad():
            log_mel = mel(torch.from_numpy(prepared)).numpy().astype(np.float32)
        with atomic_file(mel_path) as f:
            np.save(f, log_mel, allow_pickle=False)
        meta = {"seconds": prepared.size / config.sample_rate, "frames": int(log_mel.shape[-1])}
    write_atomically(meta_path, json.dumps(meta))
    return meta


def _cache_key(path: Path, config: MelConfig) -> str:
    stat = path.stat()
    ident = (
        f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{config.fingerprint()}|{PREP_VERSION}"
    )
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def _read_cache_meta(meta_path: Path, mel_path: Path) -> dict | None:
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if not meta.get("skip_reason") and not mel_path.exists():
        return None
    if meta.get("skip_reason") and meta.get("reasons") != REASONS_VERSION:
        return None  # a reason worded by an older distill: decode the file again
    return meta


def describe_skipped(skipped: Iterable[SkippedFile], root: Path) -> list[str]:
    """Human lines, relative paths: "bad.wav: unreadable: ..."."""
    lines = []
    for item in skipped:
        path = Path(item.path)
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        lines.append(f"{shown}: {item.reason}")
    return lines
