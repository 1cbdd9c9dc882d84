"""Reconstruction previews: what a user listens to while a model learns.

The same validation clips every time: the original, the original's own mel through
Griffin-Lim (the old ceiling: what the mel pipeline itself reaches), and the model's
reconstruction, plus the reconstruction from levels 1..k for every k so a user hears
what each level adds. Once the decoder stage is trained, the saved model's previews
(previews/model/) play through it, with the model through Griffin-Lim beside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from distill.audio.dataset import SoundFile, prepare_audio
from distill.audio.decode import AudioDecodeError, load_audio, write_wav
from distill.audio.images import write_mel_png
from distill.audio.mel import MelSpectrogram, mel_to_audio
from distill.events import PreviewClip
from distill.models.config import VQVAEConfig
from distill.models.magnitude import GRIFFIN_LIM_ITERS, render
from distill.models.rvqvae import ConvVQVAE

PREVIEW_CLIPS = 3
PREVIEW_MAX_SECONDS = 6.0  # a preview is the whole sound, up to this long


@dataclass(frozen=True)
class PreviewSource:
    """One validation clip: its audio, its log-mel window and its ceiling rendering."""

    name: str  # "clip1", "clip2", ...: its preview files' prefix
    audio: np.ndarray
    mel: Tensor  # (m, frames): the whole sound (up to PREVIEW_MAX_SECONDS), no padding
    source_file: str = ""  # the held-out file's name, what the page calls the clip


def preview_sources(sounds: list[SoundFile], config: VQVAEConfig) -> list[PreviewSource]:
    """Up to PREVIEW_CLIPS validation files at their own length, decoded once: a drum
    hit is heard as the hit, not as a window of mostly silence."""
    mel = MelSpectrogram(config.mel)
    samples = int(PREVIEW_MAX_SECONDS * config.mel.sample_rate)
    sources = []
    for index, sound in enumerate(sounds[:PREVIEW_CLIPS]):
        try:
            prepared, _ = prepare_audio(
                load_audio(sound.path, config.mel.sample_rate), config.mel.sample_rate
            )
        except AudioDecodeError:
            continue  # the file changed since the scan: no preview for it, training goes on
        if prepared is None:
            continue
        clip = prepared[:samples]
        with torch.no_grad():
            sources.append(
                PreviewSource(
                    f"clip{index + 1}", clip, mel(torch.from_numpy(clip)), sound.path.name
                )
            )
    return sources


def write_ceiling(sources: list[PreviewSource], config: VQVAEConfig, folder: Path) -> None:
    """Originals and their Griffin-Lim ceilings do not change: written once per run."""
    for source in sources:
        write_wav(folder / f"{source.name}_original.wav", source.audio, config.mel.sample_rate)
        ceiling = mel_to_audio(
            source.mel, config.mel, n_iter=GRIFFIN_LIM_ITERS, length=len(source.audio)
        )
        write_wav(folder / f"{source.name}_ceiling.wav", ceiling, config.mel.sample_rate)
        low, high = _png_range(source.mel, config)
        write_mel_png(folder / f"{source.name}_original.png", source.mel.numpy(), low, high)


@torch.no_grad()
def write_previews(
    model: ConvVQVAE, sources: list[PreviewSource], run_dir: Path, epoch: int, stage: bool = False
) -> list[PreviewClip]:
    """Reconstructions for this epoch under run_dir/previews/epoch_NNN, or with `stage`
    (the decoder stage is trained) the saved model's under previews/model; paths
    relative to run_dir."""
    config = model.config
    base = run_dir / "previews"
    if sources and not (base / f"{sources[0].name}_ceiling.wav").exists():
        write_ceiling(sources, config, base)
    folder = base / ("model" if stage else f"epoch_{epoch:03d}")

    def audio_of(mel: Tensor, length: int) -> Tensor:
        if stage:
            return render(model, mel, length)
        return mel_to_audio(mel.cpu(), config.mel, n_iter=GRIFFIN_LIM_ITERS, length=length)

    was_training = model.training
    model.eval()
    clips = []
    for source in sources:
        length = len(source.audio)
        device = next(model.parameters()).device
        codes = model.encode_sound(source.mel.to(device))  # (n, q)
        level_wavs = []
        for levels in range(1, config.rvq_levels + 1):
            mel = model.decode_sound(codes, source.mel.shape[-1], levels)
            path = folder / f"{source.name}_levels_{levels}.wav"
            write_wav(path, audio_of(mel, length), config.mel.sample_rate)
            level_wavs.append(str(path.relative_to(run_dir)))
        griffin_lim_wav = ""
        if stage:  # the same mel through the reference path, to compare
            path = folder / f"{source.name}_griffin_lim.wav"
            reference = mel_to_audio(mel.cpu(), config.mel, n_iter=GRIFFIN_LIM_ITERS, length=length)
            write_wav(path, reference, config.mel.sample_rate)
            griffin_lim_wav = str(path.relative_to(run_dir))
        mel = mel.cpu()
        reconstruction_png = folder / f"{source.name}_reconstruction.png"
        write_mel_png(reconstruction_png, mel.numpy(), *_png_range(source.mel, config))
        clips.append(
            PreviewClip(
                name=source.name,
                original_wav=f"previews/{source.name}_original.wav",
                ceiling_wav=f"previews/{source.name}_ceiling.wav",
                reconstruction_wav=level_wavs[-1],  # all levels: the model's full reconstruction
                level_wavs=level_wavs,
                original_png=f"previews/{source.name}_original.png",
                reconstruction_png=str(reconstruction_png.relative_to(run_dir)),
                griffin_lim_wav=griffin_lim_wav,
                source_file=source.source_file,
            )
        )
    model.train(was_training)
    return clips


def _png_range(mel: Tensor, config: VQVAEConfig) -> tuple[float, float]:
    return math.log(config.mel.log_floor), max(float(mel.max()), math.log(config.mel.log_floor) + 1)
