"""Generating: each clip written, with how much of it copies the training codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from distill.events.base import Payload


@dataclass(frozen=True)
class CopyCheck:
    """How much of a generated clip is a stretch of the prior's training codes."""

    longest_run_steps: int  # longest stretch of time steps equal, every level, to one in training
    longest_run_seconds: float
    longest_run_share: float  # longest_run_steps / the clip's steps, 0..1
    clip_offset_seconds: float  # where that stretch starts in the clip
    nearest_file: str  # the training file holding it (relative to its dataset); "" if none
    nearest_offset_seconds: float  # where the stretch starts in that file


@dataclass(frozen=True)
class ClipGenerated(Payload):
    """One generated clip was written."""

    kind: ClassVar[str] = "clip_generated"
    index: int  # 0-based within the request
    path: str
    seconds: float
    seed: int
    copy_check: CopyCheck
    match_path: str = ""  # the nearest training file's stretch, lined up with the clip; "" if none
    one_shot: bool = False  # one sound, cut where it decayed (seconds is then its own length)
    tries: int = 1  # draws it took: a silent draw is drawn again (training/one_shot.py)
    silent: bool = False  # every try was silent: reported, not hidden
    rms: float = 0.0  # of the written audio, full scale 1
    variation_of: str = ""  # a variation: the training file whose first level it keeps
