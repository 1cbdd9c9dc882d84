"""A sample pack: chosen sounds of one model as one zip a sampler or a DAW takes in.

Musicians take sounds into a sampler, so a pack holds WAVs at one level (each brought to
the peak the scan gives every training file, PEAK_TARGET, so every pad plays as loud as
the next), 24-bit, named by what made them: MODEL_MODE_seedSEED.wav for a generated clip
(MODE: one-shot, continuous or variation) and MODEL_edit_NAME.wav for a saved edit, with
-2, -3 ... where two would share a name. Beside them, PACK_MANIFEST says where each came
from, its seed and mode, its length and the gain it was given (a quiet sound brought up
a long way says so: "silent" by generation's rule, training/one_shot.py).

The dashboard's model page (server/packs.py) and `distill generate --pack` both call
`write_pack`; nothing here knows where the sounds were picked.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from distill.audio.dataset import PEAK_TARGET
from distill.events import ClipGenerated
from distill.files import write_atomically
from distill.inference.one_shot import is_silent

PACK_MANIFEST = "manifest.json"
MAX_PACK_SOUNDS = 128  # one pack: more pads than a sampler bank holds
MAX_SOUND_BYTES = 64 * 1024**2  # one WAV read into a pack (a generated clip is < 600 s)


class PackError(ValueError):
    """A sound that cannot go into a pack, with the reason."""


@dataclass(frozen=True)
class PackSound:
    """One sound to pack: a WAV, and what made it."""

    path: Path
    mode: str  # "one-shot", "continuous", "variation" or "edit"
    seed: int | None = None  # a generated clip's seed
    label: str = ""  # an edit's name
    origin: str = ""  # where it came from, for the manifest (a request's folder, "edits")

    @property
    def stem(self) -> str:
        return f"edit_{self.label}" if self.mode == "edit" else f"{self.mode}_seed{self.seed}"


def clip_mode(one_shot: bool, variation_of: str) -> str:
    """A generated clip's mode, as its pack name says it."""
    return "variation" if variation_of else "one-shot" if one_shot else "continuous"


def generated_sounds(clips: Sequence[ClipGenerated]) -> list[PackSound]:
    """The clips one generate request wrote, as pack sounds."""
    return [
        PackSound(Path(c.path), clip_mode(c.one_shot, c.variation_of), c.seed,
                  origin=Path(c.path).parent.name)
        for c in clips
    ]  # fmt: skip


def pack_bytes(model_name: str, sounds: Sequence[PackSound]) -> tuple[bytes, dict[str, Any]]:
    """(the zip, its manifest): every sound normalised, named, listed. PackError names a
    sound that cannot be read."""
    if not sounds:
        raise PackError("pick at least one sound for the pack")
    if len(sounds) > MAX_PACK_SOUNDS:
        raise PackError(f"a pack holds {MAX_PACK_SOUNDS} sounds at most, not {len(sounds)}")
    entries: list[dict[str, Any]] = []
    taken: set[str] = set()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for sound in sounds:
            audio, rate = _read(sound.path)
            name = _free_name(f"{model_name}_{sound.stem}", taken)
            peak = float(np.abs(audio).max(initial=0.0))
            gain = PEAK_TARGET / peak if peak > 0 else 1.0
            wav = io.BytesIO()
            sf.write(wav, (audio * gain).astype(np.float32), rate, format="WAV", subtype="PCM_24")
            archive.writestr(name, wav.getvalue())
            entries.append({
                "file": name, "mode": sound.mode, "seed": sound.seed, "edit": sound.label or None,
                "from": f"{sound.origin}/{sound.path.name}" if sound.origin else sound.path.name,
                "seconds": round(len(audio) / rate, 4), "sample_rate": rate,
                "gain_db": round(20 * math.log10(gain), 2), "silent": is_silent(audio),
            })  # fmt: skip
        manifest = {
            "model_name": model_name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "peak": PEAK_TARGET,
            "sounds": entries,
        }
        archive.writestr(PACK_MANIFEST, json.dumps(manifest, indent=2))
    return buffer.getvalue(), manifest


def write_pack(model_name: str, sounds: Sequence[PackSound], destination: Path) -> dict[str, Any]:
    """The pack written to `destination` atomically; returns its manifest."""
    data, manifest = pack_bytes(model_name, sounds)
    try:
        write_atomically(destination, data)
    except OSError as error:
        raise PackError(f"cannot write {destination}: {error.strerror or error}") from error
    return manifest


def pack_generation(destination: Path, model_name: str, clips: Sequence[ClipGenerated]) -> str:
    """`distill generate --pack`: the request's clips as a pack; says what it wrote."""
    manifest = write_pack(model_name, generated_sounds(clips), destination)
    return f"sample pack: {destination} ({len(manifest['sounds'])} WAVs and {PACK_MANIFEST})"


def _read(path: Path) -> tuple[np.ndarray, int]:
    try:
        if path.stat().st_size > MAX_SOUND_BYTES:
            raise PackError(f"{path.name}: over {MAX_SOUND_BYTES // 1024**2} MiB")
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as error:  # soundfile's errors are RuntimeErrors
        raise PackError(f"cannot read {path.name}: {error}") from error
    return audio.mean(axis=1), int(rate)


def _free_name(stem: str, taken: set[str]) -> str:
    name, n = f"{stem}.wav", 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}.wav"
    taken.add(name)
    return name
