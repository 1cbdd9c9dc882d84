"""Small synthetic sounds: the demo set `make run` trains on and the tests' fixtures.

Plucked tones, chirps, noise bursts and clicks at several sample rates, so a demo run
exercises resampling, padding and mixed lengths like a real folder would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def tone(freq: float, seconds: float, sr: int, decay: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    partials = sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3))
    return (0.6 * partials * np.exp(-decay * t)).astype(np.float32)


def chirp(f0: float, f1: float, seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (0.5 * np.sin(phase) * np.hanning(t.size)).astype(np.float32)


def noise_burst(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * sr)
    envelope = np.exp(-np.linspace(0, 6, n))
    return (0.5 * rng.standard_normal(n) * envelope).astype(np.float32)


def click(sr: int, seconds: float = 0.02) -> np.ndarray:
    """An impulse with a short resonant ring, as a real click has."""
    t = np.arange(int(seconds * sr)) / sr
    return (0.9 * np.sin(2 * np.pi * 3000 * t) * np.exp(-t / (seconds / 8))).astype(np.float32)


def make_demo_set(folder: Path | str, count: int = 12, seed: int = 0) -> list[Path]:
    """Write `count` varied sounds as WAV/FLAC/OGG into `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rates = (16000, 22050, 44100, 48000)
    paths = []
    for i in range(count):
        sr = rates[i % len(rates)]
        kind = i % 4
        if kind == 0:
            audio, name = (
                tone(110 * 2 ** (rng.integers(0, 24) / 12), rng.uniform(0.4, 2.0), sr),
                "tone",
            )
        elif kind == 1:
            audio, name = (
                chirp(rng.uniform(100, 400), rng.uniform(1000, 5000), rng.uniform(0.5, 2.5), sr),
                "chirp",
            )
        elif kind == 2:
            audio, name = noise_burst(rng.uniform(0.2, 1.0), sr, rng), "noise"
        else:
            audio, name = click(sr, rng.uniform(0.02, 0.1)), "click"
        ext = (".wav", ".flac", ".ogg")[i % 3]
        path = folder / f"{i:03d}_{name}{ext}"
        sf.write(path, audio, sr)
        paths.append(path)
    return paths
