"""Mel spectrograms as PNG images, with nothing but zlib: previews need no plotting stack."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from distill.files import write_atomically

# A perceptually ordered dark-to-bright ramp (black, indigo, magenta, orange, pale yellow).
_RAMP = np.array(
    [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]],
    dtype=np.float64,
)


def colorize(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """(h, w) values -> (h, w, 3) uint8 through the ramp, clipped to [low, high]."""
    span = max(high - low, 1e-9)
    x = np.clip((values - low) / span, 0.0, 1.0) * (len(_RAMP) - 1)
    i = np.minimum(np.floor(x).astype(int), len(_RAMP) - 2)
    frac = (x - i)[..., None]
    rgb = _RAMP[i] * (1 - frac) + _RAMP[i + 1] * frac
    return rgb.round().astype(np.uint8)


def encode_png(rgb: np.ndarray) -> bytes:
    """(h, w, 3) uint8 -> PNG bytes (8-bit RGB, no filtering)."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def mel_png(log_mel: np.ndarray, low: float, high: float, scale: int = 2) -> bytes:
    """Low frequencies at the bottom; each bin drawn `scale` pixels tall and wide."""
    image = colorize(np.flipud(np.asarray(log_mel, dtype=np.float64)), low, high)
    return encode_png(image.repeat(scale, axis=0).repeat(scale, axis=1))


def write_mel_png(path: Path, log_mel: np.ndarray, low: float, high: float, scale: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, mel_png(log_mel, low, high, scale))  # a page may be reading it
