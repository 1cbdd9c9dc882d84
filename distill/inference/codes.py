"""A sound as its model's code grid, and what the code editor does to one: encode, decode,
check that a grid belongs to a model (regenerating a stretch with the prior: regenerate.py).

Plain functions over a CodeGrid, so the CLI (`distill codes`) and the dashboard's editor
call the same ones. A grid saved as JSON (the "distill-codes" format, documented in the
README) comes from outside when it is read back: `CodeGrid.from_json` checks every field
before anything is built from it, and `check_belongs` refuses a grid another model made.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.audio.dataset import load_prepared
from distill.audio.decode import stated_seconds
from distill.audio.mel import MelSpectrogram
from distill.files import parse_json
from distill.models.magnitude import render, render_reach
from distill.models.rvqvae import ConvVQVAE, decoder_reach

CODES_FORMAT = "distill-codes"
CODES_VERSION = 1
MAX_CODES_FILE_BYTES = 16 * 1024**2
MAX_STEPS = 100_000  # latent steps in one grid: minutes of sound at any model's rate
MAX_EDIT_SECONDS = 180.0  # the editor's sounds: every edit decodes the whole grid
DECODE_CHUNK_FRAMES = 512  # mel frames decoded at once: memory and time per piece are bounded


class CodesError(ValueError):
    """A codes file or an edit that cannot be used, with the reason."""


@dataclass(frozen=True)
class CodeGrid:
    """One sound as codes: `codes[level][step]`, with what ties it to its model."""

    model_name: str
    fingerprint: str  # model_fingerprint of the model that encoded it
    codes: np.ndarray  # (levels, steps) int64
    codebook_size: int
    sample_rate: int
    samples_per_step: int  # audio samples one latent step stands for

    @property
    def steps(self) -> int:
        return int(self.codes.shape[1])

    @property
    def seconds(self) -> float:
        return self.steps * self.samples_per_step / self.sample_rate

    def step_at(self, seconds: float) -> int:
        return min(self.steps, max(0, round(seconds * self.sample_rate / self.samples_per_step)))

    def with_codes(self, codes: np.ndarray) -> CodeGrid:
        return CodeGrid(
            self.model_name, self.fingerprint, codes.astype(np.int64), self.codebook_size,
            self.sample_rate, self.samples_per_step,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CODES_FORMAT,
            "version": CODES_VERSION,
            "model": {"name": self.model_name, "fingerprint": self.fingerprint},
            "rvq_levels": int(self.codes.shape[0]),
            "codebook_size": self.codebook_size,
            "sample_rate": self.sample_rate,
            "samples_per_step": self.samples_per_step,
            "codes": self.codes.tolist(),
        }

    @classmethod
    def from_json(cls, data: Any) -> CodeGrid:
        """Check everything a codes file says; a CodesError names the first thing wrong."""
        if not isinstance(data, dict) or data.get("format") != CODES_FORMAT:
            raise CodesError(f'not a distill codes file (no "format": "{CODES_FORMAT}")')
        if data.get("version") != CODES_VERSION:
            raise CodesError(
                f"codes format version {data.get('version')!r}: this distill reads {CODES_VERSION}"
            )
        model = data.get("model")
        if not isinstance(model, dict) or not all(
            isinstance(model.get(k), str) and 0 < len(model[k]) <= 200 for k in ("name", "fingerprint")
        ):  # fmt: skip
            raise CodesError('"model" must give the model\'s name and fingerprint')
        sizes: dict[str, int] = {}
        for key in ("rvq_levels", "codebook_size", "sample_rate", "samples_per_step"):
            value = data.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 1_000_000:
                raise CodesError(f"{key!r} must be a positive integer")
            sizes[key] = value
        rows = data.get("codes")
        if not isinstance(rows, list) or len(rows) != sizes["rvq_levels"]:
            raise CodesError(f'"codes" must hold one row per RVQ level ({sizes["rvq_levels"]})')
        if not all(isinstance(r, list) for r in rows) or len({len(r) for r in rows}) != 1:
            raise CodesError('every row of "codes" must be a list of the same length')
        if not 0 < len(rows[0]) <= MAX_STEPS:
            raise CodesError(f"a grid holds 1 to {MAX_STEPS} time steps, not {len(rows[0])}")
        if not all(type(c) is int and 0 <= c < sizes["codebook_size"] for r in rows for c in r):
            raise CodesError(
                f"every code must be an integer from 0 to {sizes['codebook_size'] - 1}"
            )
        return cls(
            model["name"], model["fingerprint"], np.array(rows, dtype=np.int64),
            sizes["codebook_size"], sizes["sample_rate"], sizes["samples_per_step"],
        )  # fmt: skip


def read_codes(path: Path) -> CodeGrid:
    try:
        if path.stat().st_size > MAX_CODES_FILE_BYTES:
            raise CodesError(
                f"{path}: over {MAX_CODES_FILE_BYTES // 1024**2} MiB, too big for a codes file"
            )
        data = parse_json(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CodesError(f"cannot read {path}: {error.strerror or error}") from error
    except (ValueError, UnicodeDecodeError) as error:
        raise CodesError(f"{path} is not JSON: {error}") from error
    try:
        return CodeGrid.from_json(data)
    except CodesError as error:
        raise CodesError(f"{path}: {error}") from error


_fingerprints: weakref.WeakKeyDictionary[ConvVQVAE, str] = weakref.WeakKeyDictionary()


def model_fingerprint(vqvae: ConvVQVAE) -> str:
    """Identifies the VQ-VAE's weights, whose codes a grid holds (a prior added later does
    not change it). Hashed once per loaded model: every edit checks it."""
    if vqvae not in _fingerprints:
        digest = hashlib.sha256()
        for name, tensor in sorted(vqvae.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        _fingerprints[vqvae] = digest.hexdigest()[:16]
    return _fingerprints[vqvae]


def check_editable(grid: CodeGrid) -> None:
    """A grid the editor may work on: at most MAX_EDIT_SECONDS. A 10-minute upload made
    every edit decode for minutes and gigabytes, and queued every other edit behind it."""
    _check_edit_seconds(grid.seconds)


def _check_edit_seconds(seconds: float) -> None:
    if seconds > MAX_EDIT_SECONDS:
        raise CodesError(
            f"the sound is {seconds / 60:.1f} minutes long: the editor opens sounds up"
            f" to {MAX_EDIT_SECONDS / 60:g} minutes (cut it shorter, or use `distill codes`)"
        )


def _samples_per_step(vqvae: ConvVQVAE) -> int:
    return vqvae.config.downsample * vqvae.config.mel.hop_length


def encode_file(
    vqvae: ConvVQVAE, model_name: str, sound: Path, for_editor: bool = False
) -> CodeGrid:
    """A sound file as the model hears it in training (trimmed, normalised), coded.

    `for_editor`: refuse a sound over the editor's cap (check_editable) before the work:
    a file whose header says it is longer is refused undecoded (trimming its silence
    might have brought it under: the cap is the file's length), and a sound still longer
    once read is refused unencoded. A 10-minute upload was decoded and encoded whole,
    seconds of the editor's helper, only to be refused."""
    config = vqvae.config.mel
    if for_editor and (stated := stated_seconds(sound)) is not None:
        _check_edit_seconds(stated)
    audio, reason = load_prepared(sound, config.sample_rate)
    if audio is None:
        raise CodesError(f"{sound.name}: {reason}")
    if for_editor:
        _check_edit_seconds(audio.size / config.sample_rate)
    with torch.no_grad():
        mel = MelSpectrogram(config)(torch.from_numpy(audio))
    codes = vqvae.encode_sound(mel).T.numpy()  # (levels, steps)
    return CodeGrid(
        model_name, model_fingerprint(vqvae), codes.astype(np.int64),
        vqvae.config.codebook_size, config.sample_rate, _samples_per_step(vqvae),
    )  # fmt: skip


def check_belongs(grid: CodeGrid, vqvae: ConvVQVAE, model_name: str) -> None:
    """The one check of a grid from outside against the model that is to decode it: its
    fingerprint, and every number it states that the model already knows (levels,
    codebook size, sample rate, samples per step) must be the model's. A grid's own
    numbers are never trusted: a `samples_per_step` of a million made a 44-step grid an
    88 MB sound."""
    fingerprint = model_fingerprint(vqvae)
    if grid.fingerprint != fingerprint:
        raise CodesError(
            f"these codes were made by model {grid.model_name!r} (fingerprint "
            f"{grid.fingerprint}); model {model_name!r} (fingerprint {fingerprint}) cannot "
            "decode them: its codebooks are others"
        )
    config = vqvae.config
    model_says = {
        "rvq_levels": (grid.codes.shape[0], config.rvq_levels),
        "codebook_size": (grid.codebook_size, config.codebook_size),
        "sample_rate": (grid.sample_rate, config.mel.sample_rate),
        "samples_per_step": (grid.samples_per_step, _samples_per_step(vqvae)),
    }
    for key, (said, known) in model_says.items():
        if said != known:
            raise CodesError(f"the grid's {key} is {said}; model {model_name!r} has {known}")


def decode_grid(vqvae: ConvVQVAE, grid: CodeGrid, seed: int = 0) -> np.ndarray:
    """The grid as audio, through the model's default listening path."""
    return decode_levels(vqvae, grid, set(), seed)


def seconds_to_steps(grid: CodeGrid, start: float, end: float) -> tuple[int, int]:
    """A time range in seconds as whole steps [first, last), at least one step long."""
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start or start < 0:
        raise CodesError(f"a range from --start to a later --end, not {start}..{end} s")
    first = grid.step_at(start)
    if first >= grid.steps:
        raise CodesError(f"the sound is {grid.seconds:.2f} s long: no step starts at {start} s")
    return first, max(first + 1, grid.step_at(end))


def levels_mel(vqvae: ConvVQVAE, grid: CodeGrid, muted: set[int]) -> torch.Tensor:
    """(m, t) log-mel the grid decodes to with the `muted` levels (0-based) left out."""
    _check_muted(grid, muted)
    codes = torch.from_numpy(grid.codes.T.copy())  # (steps, levels)
    if not muted:
        return vqvae.decode_sound(codes)
    return _mel_without(vqvae, codes.unsqueeze(0), muted)


def _check_muted(grid: CodeGrid, muted: set[int]) -> None:
    if not muted <= set(range(grid.codes.shape[0])):
        raise CodesError(f"muted levels are 0 to {grid.codes.shape[0] - 1}, not {sorted(muted)}")


@torch.no_grad()
def _mel_without(vqvae: ConvVQVAE, codes: torch.Tensor, muted: set[int]) -> torch.Tensor:
    """(1, steps, levels) codes -> (m, t) log-mel of the levels not in `muted`."""
    vectors = vqvae.quantizer.get_codes_from_indices(codes)  # (levels, 1, steps, dim)
    keep = [i for i in range(vectors.shape[0]) if i not in muted]
    summed = vectors[keep].sum(dim=0) if keep else torch.zeros_like(vectors[0])
    return vqvae.decode(vqvae.quantizer.project_out(summed))[0]


def decode_levels(vqvae: ConvVQVAE, grid: CodeGrid, muted: set[int], seed: int = 0) -> np.ndarray:
    """The grid as audio with the `muted` levels (0-based) left out: what the others make.
    Decoded piece by piece (decode_chunk), so the memory it takes beside the sound
    itself does not grow with the sound's length."""
    chunks = range(decode_chunks(vqvae, grid))
    return np.concatenate([decode_chunk(vqvae, grid, muted, chunk, seed) for chunk in chunks])


def _chunk_steps(vqvae: ConvVQVAE) -> int:
    return max(1, DECODE_CHUNK_FRAMES // vqvae.config.downsample)


def decode_chunks(vqvae: ConvVQVAE, grid: CodeGrid) -> int:
    """How many pieces decode_chunk cuts the grid into."""
    return math.ceil(grid.steps / _chunk_steps(vqvae))


@torch.no_grad()
def decode_chunk(
    vqvae: ConvVQVAE, grid: CodeGrid, muted: set[int], chunk: int, seed: int = 0
) -> np.ndarray:
    """Piece `chunk` of the grid's sound, as the whole grid decoded at once would have it.

    Every stage is local: the decoder's convolutions, the decoder stage's, and
    Griffin-Lim (each frame depends on the frames within render_reach, and its starting
    phase is drawn per block of frames: audio/mel.py's initial_phase). So the piece is
    decoded from its steps and enough steps each side to cover those reaches, and those
    extra steps' sound is cut off again. Long work can stop or yield between pieces.
    """
    _check_muted(grid, muted)
    size, down = _chunk_steps(vqvae), vqvae.config.downsample
    if not 0 <= chunk < decode_chunks(vqvae, grid):
        raise CodesError(f"the grid has {decode_chunks(vqvae, grid)} pieces, not piece {chunk}")
    margin = decoder_reach(down) + math.ceil(render_reach(vqvae) / down)
    first, last = chunk * size, min(grid.steps, (chunk + 1) * size)
    start, end = max(0, first - margin), min(grid.steps, last + margin)
    codes = torch.from_numpy(grid.codes.T[start:end].copy()).unsqueeze(0)  # (1, steps, levels)
    mel = _mel_without(vqvae, codes, muted)
    per_step = grid.samples_per_step
    audio = render(vqvae, mel, (end - start) * per_step, seed, first_frame=start * down).numpy()
    return audio[(first - start) * per_step : (last - start) * per_step]


def code_colours(vqvae: ConvVQVAE) -> list[list[str]]:
    """A colour per code of each level, from its place in the level's codebook: the two
    main directions of the codebook vectors (PCA) give hue and lightness, so codes that
    lie close together look alike."""
    colours = []
    with torch.no_grad():
        for codebook in vqvae.quantizer.codebooks:  # (size, dim) per level
            vectors = codebook.float() - codebook.float().mean(dim=0)
            _, _, v = torch.linalg.svd(vectors, full_matrices=False)
            projected = vectors @ v[: min(2, v.shape[0])].T
            if projected.shape[1] < 2:
                projected = torch.cat([projected, torch.zeros_like(projected)], dim=1)
            span = projected.abs().amax(dim=0).clamp(min=1e-8)
            x, y = (projected / span).T.tolist()
            colours.append(
                [f"hsl({(math.atan2(b, a) / math.tau * 360) % 360:.0f} 70% {45 + 20 * math.hypot(a, b) / 1.5:.0f}%)"
                 for a, b in zip(x, y, strict=True)]
            )  # fmt: skip
    return colours
