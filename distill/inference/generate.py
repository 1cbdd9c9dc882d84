"""Generate new sounds from a model with a prior: `generate_clips(spec, emit)`.

Sample codes from the prior (KV cache, sliding past one window), decode them through the
VQ-VAE to log-mel and through Griffin-Lim to audio, write WAVs, and check each clip
against the prior's training codes (distill/models/copy_check.py). Shaped like the
training loops: a plain function of a spec, reporting through `emit` (one ClipGenerated
per clip), so the CLI calls it in-process and a worker can run it for the dashboard.

Same spec, same sounds: clip i draws its codes and its Griffin-Lim phases from seed + i
alone, so `--seed 7 --count 3` gives the clips of seeds 7, 8 and 9. A silent draw is
drawn again from the same generator (so still from its seed alone), at most MAX_TRIES
times; a clip silent on every try is written and reported (ClipGenerated.silent).

One-shot or continuous: a prior trained on short sounds (its card's dataset.one_shot)
makes one sound per clip by default, cut where the prior ends it and its tail has
decayed, `seconds` being the longest it may run (inference/one_shot.py); continuous
clips run the whole `seconds`. GenerateSpec.one_shot overrides the default.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from distill.audio.dataset import load_prepared
from distill.audio.decode import write_wav
from distill.events import ClipGenerated, CopyCheck, Payload
from distill.files import write_atomically
from distill.inference.one_shot import (
    MAX_TRIES,
    is_silent,
    normalise_peak,
    rms,
    sound_span,
    trim_decayed,
    trim_leading,
)
from distill.inference.spec import GenerateSpec
from distill.models.copy_check import CopyChecker, run_means_something, training_copy_checker
from distill.models.history import MANIFEST_NAME
from distill.models.library import ModelWithPrior, load_with_prior
from distill.models.magnitude import render
from distill.models.rvqvae import silence_codes
from distill.models.sampling import CLIPS_PER_BATCH, generate_codes
from distill.run_types import never
from distill.threads import one_torch_thread


class GenerationResult(NamedTuple):
    clips: list[ClipGenerated]
    manifest_path: Path  # generation.json beside the clips: the spec and every clip's check
    wall_seconds: float  # loading, sampling, decoding and writing, all clips

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio made per second of wall time."""
        return sum(c.seconds for c in self.clips) / self.wall_seconds


def _ignore(payload: Payload) -> None:
    pass


def generate_clips(
    spec: GenerateSpec,
    emit: Callable[[ClipGenerated], None] = _ignore,
    should_stop: Callable[[], bool] = never,
) -> GenerationResult:
    """Write `spec.count` clips to `spec.out_dir`; stops early (keeping what is written)
    when `should_stop()` turns true. A model without a prior raises ModelFileError.
    Torch runs on one thread meanwhile (threads.one_torch_thread: faster, here)."""
    with one_torch_thread():
        return _generate_clips(spec, emit, should_stop)


def _generate_clips(
    spec: GenerateSpec, emit: Callable[[ClipGenerated], None], should_stop: Callable[[], bool]
) -> GenerationResult:
    started = time.perf_counter()
    loaded = load_with_prior(spec.model_path)
    mel_config = loaded.vqvae.config.mel
    seconds_per_step = loaded.prior_card.seconds_per_step
    one_shot = loaded.prior_card.dataset.one_shot if spec.one_shot is None else spec.one_shot
    steps = max(1, math.ceil(spec.seconds / seconds_per_step))
    checker = copy_checker(loaded)
    clips = []
    for index, clip_codes, generator, again, source in _drawn(loaded, spec, steps):
        if should_stop():
            break
        seed, tries = spec.seed + index, 1
        audio, kept = _render(loaded, clip_codes, spec, seed, one_shot, checker.silence)
        while is_silent(audio) and tries < MAX_TRIES:  # drawn again from the same generator
            tries += 1
            clip_codes = generate_codes(
                loaded.prior, steps, [generator], spec.sampling, forced=again
            )[0]
            audio, kept = _render(loaded, clip_codes, spec, seed, one_shot, checker.silence)
        path = spec.out_dir / f"clip{index + 1:02d}_seed{seed}.wav"
        write_wav(path, audio, mel_config.sample_rate)
        seconds = len(audio) / mel_config.sample_rate
        check = checker.check(kept.numpy())
        match = _write_match(loaded, check, path, seconds)
        clip = ClipGenerated(
            index, str(path), seconds, seed, check, match, one_shot, tries, is_silent(audio),
            rms(audio), source,
        )  # fmt: skip
        emit(clip)
        clips.append(clip)
    wall = time.perf_counter() - started
    manifest = _write_manifest(spec, loaded, clips, wall)
    return GenerationResult(clips, manifest, wall)


class _Drawn(NamedTuple):
    place: int  # the clip's index in the request: its seed is seed + place
    codes: torch.Tensor  # (steps, q)
    generator: torch.Generator  # the clip's own, where it left off: a redraw goes on from it
    forced: torch.Tensor | None  # (1, steps, q), what a variation keeps; None: nothing
    source: str  # the training file a variation varies; "" otherwise


def _drawn(loaded: ModelWithPrior, spec: GenerateSpec, steps: int) -> Iterator[_Drawn]:
    """The request's clips' codes, drawn CLIPS_PER_BATCH at a time as they are asked for:
    memory stays that of one batch whatever `spec.count` is, the first clips are written
    while the rest are still to draw, and a request stopped early draws no further batch.
    A clip's codes are those it would get alone (generate_codes)."""
    for first in range(0, spec.count, CLIPS_PER_BATCH):
        count = min(CLIPS_PER_BATCH, spec.count - first)
        seeds = range(spec.seed + first, spec.seed + first + count)
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        forced, sources = None, [""] * count
        if spec.variation:
            forced, sources = variation_grid(loaded, spec.seed + first, count, steps)
        codes = generate_codes(loaded.prior, steps, generators, spec.sampling, forced=forced)
        for i in range(count):
            kept = None if forced is None else forced[i : i + 1]
            yield _Drawn(first + i, codes[i], generators[i], kept, sources[i])


def variation_grid(
    loaded: ModelWithPrior, seed: int, count: int, steps: int
) -> tuple[torch.Tensor, list[str]]:
    """The codes a variation keeps, (count, steps, q) with -1 where the prior draws, and
    the training file each clip varies (clip i: file (seed + i) mod the number of files).

    A variation keeps its file's first RVQ level (the coarse shape: envelope, register)
    and the prior draws the finer levels after it; past the file's end every level is
    the VQ-VAE's silence, so the clip ends where its file ends. For a set too small for a
    prior to invent whole sounds from (a 10 to 20 hit kit), this still gives new takes."""
    q = loaded.prior.config.rvq_levels
    silence = silence_codes(loaded.vqvae)[0]  # (q,) one step of silence
    forced = silence.repeat(count, steps, 1)  # (count, steps, q)
    names = list(loaded.prior_card.training_files)
    sources = []
    for i in range(count):
        index = (seed + i) % len(loaded.training_codes)
        source = loaded.training_codes[index][:steps]  # (t, q)
        forced[i, : len(source), 0] = source[:, 0]
        forced[i, : len(source), 1:q] = -1
        sources.append(names[index] if index < len(names) else "")
    return forced, sources


def _render(
    loaded: ModelWithPrior,
    codes: torch.Tensor,
    spec: GenerateSpec,
    seed: int,
    one_shot: bool,
    silence: np.ndarray,
) -> tuple[np.ndarray, torch.Tensor]:
    """(steps, q) codes -> (audio, the codes it kept): the whole clip, or its one sound."""
    config = loaded.vqvae.config
    mel = loaded.vqvae.decode_indices(codes.unsqueeze(0))[0]  # (m, steps * downsample)
    samples_per_step = config.downsample * config.mel.hop_length
    length = round(spec.seconds * config.mel.sample_rate)
    audio = render(loaded.vqvae, mel, length, seed, spec.griffin_lim_iters).numpy()  # its stage
    if not one_shot:
        return audio, codes
    span = sound_span(codes.numpy(), silence, loaded.prior.config.codebook_size)
    if span.end == span.start:
        return audio[:0], codes[:0]
    cut = audio[span.start * samples_per_step : span.end * samples_per_step]
    decayed = trim_decayed(cut, config.mel.sample_rate)
    kept = trim_leading(decayed, config.mel.sample_rate)
    # The codes of the steps the clip keeps, so the copy check counts no trimmed step.
    first = span.start + (len(decayed) - len(kept)) // samples_per_step
    last = span.start + math.ceil(len(decayed) / samples_per_step)
    return normalise_peak(kept), codes[first:last]


def _write_match(loaded: ModelWithPrior, check: CopyCheck, clip_path: Path, seconds: float) -> str:
    """Write the nearest training file's stretch beside the clip, so the two can be heard
    side by side: the file as its codes were made (trimmed), cut so the shared run sits
    at the same time in both, brought to the training files' peak as a one-shot is (a
    stretch from a file's quiet tail was near silent). "" when the shared run is too short
    to mean anything, there is no nearest file or it can no longer be read (the dataset
    moved): the check stands."""
    if not check.nearest_file or not run_means_something(check.longest_run_seconds):
        return ""  # a run by chance: no stretch to pair (copy_check.py)
    source = Path(loaded.prior_card.dataset.path) / check.nearest_file
    sample_rate = loaded.vqvae.config.mel.sample_rate
    audio, _ = load_prepared(source, sample_rate)  # trimmed as it was for its codes
    if audio is None:
        return ""
    start = max(0.0, check.nearest_offset_seconds - check.clip_offset_seconds)
    first = round(start * sample_rate)
    excerpt = audio[first : first + round(seconds * sample_rate)]
    if excerpt.size == 0:
        return ""
    path = clip_path.with_name(f"{clip_path.stem}_match.wav")
    write_wav(path, normalise_peak(excerpt), sample_rate)  # heard at the clip's level
    return str(path)


def copy_checker(loaded: ModelWithPrior) -> CopyChecker:
    """The prior's training codes, with the VQ-VAE's codes for silence left out of runs."""
    return training_copy_checker(
        loaded.vqvae,
        loaded.training_codes,
        list(loaded.prior_card.training_files),
        loaded.prior.config.codebook_size,
        loaded.prior_card.seconds_per_step,
    )


def _write_manifest(
    spec: GenerateSpec, loaded: ModelWithPrior, clips: list[ClipGenerated], wall: float
) -> Path:
    spec_data = spec.to_dict()
    manifest = {
        "model_name": loaded.card.name,
        "prior_run_id": loaded.prior_card.run_id or "",
        "dataset": loaded.prior_card.dataset.path,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "spec": spec_data,
        "wall_seconds": wall,
        "clips": [clip.to_dict() for clip in clips],
    }
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    # Atomically: the model page lists the history while a request is still writing.
    return write_atomically(spec.out_dir / MANIFEST_NAME, json.dumps(manifest, indent=2))
