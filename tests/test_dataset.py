"""Scanning a folder: usable files, skipped files with reasons, the mel cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_MEL, write_bad_sounds, write_good_sounds

from distill.audio.dataset import DatasetError, require_usable, scan_dataset
from distill.audio.mel_config import MelConfig


def test_bad_files_are_skipped_and_named_and_the_rest_used(tmp_path: Path) -> None:
    good = write_good_sounds(tmp_path / "set")
    expected = write_bad_sounds(tmp_path / "set" / "nested")
    report = scan_dataset(tmp_path / "set", TINY_MEL, tmp_path / "cache")

    assert sorted(s.path.name for s in report.usable) == sorted(p.name for p in good)
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert set(reasons) == set(expected)
    for name, word in expected.items():
        assert word in reasons[name], (name, reasons[name])


def test_every_usable_file_has_a_finite_mel_of_the_right_shape(
    sounds: Path, tmp_path: Path
) -> None:
    report = scan_dataset(sounds, TINY_MEL, tmp_path / "cache")
    for sound in report.usable:
        mel = sound.load_mel()
        assert mel.shape == (TINY_MEL.n_mels, sound.frames)
        assert np.isfinite(mel).all()
    assert report.total_seconds == pytest.approx(sum(s.seconds for s in report.usable))
    assert report.total_seconds > 2.0


def test_second_scan_reads_the_cache_without_decoding(
    sounds: Path, tmp_path: Path, monkeypatch
) -> None:
    first = scan_dataset(sounds, TINY_MEL, tmp_path / "cache")
    assert first.cache_hits == 0

    def no_decoding(*args, **kwargs):
        raise AssertionError("audio decoded on a cached scan")

    monkeypatch.setattr("distill.audio.dataset.decode_audio", no_decoding)
    second = scan_dataset(sounds, TINY_MEL, tmp_path / "cache")
    assert second.cache_hits == len(first.usable)
    assert [s.frames for s in second.usable] == [s.frames for s in first.usable]


def test_cache_misses_when_the_file_or_front_end_changes(sounds: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    scan_dataset(sounds, TINY_MEL, cache)
    touched = sorted(sounds.iterdir())[0]
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after_touch = scan_dataset(sounds, TINY_MEL, cache)
    assert after_touch.cache_hits == len(after_touch.usable) - 1

    other_front_end = MelConfig(sample_rate=8000, n_fft=256, hop_length=64, n_mels=16)
    assert scan_dataset(sounds, other_front_end, cache).cache_hits == 0


def test_skip_reasons_are_cached_too(tmp_path: Path) -> None:
    write_bad_sounds(tmp_path / "bad")
    first = scan_dataset(tmp_path / "bad", TINY_MEL, tmp_path / "cache")
    second = scan_dataset(tmp_path / "bad", TINY_MEL, tmp_path / "cache")
    assert [s.reason for s in second.skipped] == [s.reason for s in first.skipped]
    assert second.cache_hits == len(first.skipped) - 1  # the .txt never reaches the cache


def test_zero_usable_files_is_a_clear_error(tmp_path: Path) -> None:
    write_bad_sounds(tmp_path / "bad")
    report = scan_dataset(tmp_path / "bad", TINY_MEL, tmp_path / "cache")
    with pytest.raises(DatasetError, match="no usable audio") as caught:
        require_usable(report)
    assert "silence.wav: silent" in str(caught.value)


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    report = scan_dataset(tmp_path / "empty", TINY_MEL, tmp_path / "cache")
    with pytest.raises(DatasetError, match="no audio files found"):
        require_usable(report)
    with pytest.raises(DatasetError, match="not a folder"):
        scan_dataset(tmp_path / "missing", TINY_MEL, tmp_path / "cache")


def test_fingerprint_changes_when_a_file_changes(sounds: Path, tmp_path: Path) -> None:
    before = scan_dataset(sounds, TINY_MEL, tmp_path / "cache").fingerprint()
    assert scan_dataset(sounds, TINY_MEL, tmp_path / "cache").fingerprint() == before
    write_good_sounds(sounds, count=7)
    assert scan_dataset(sounds, TINY_MEL, tmp_path / "cache").fingerprint() != before
