"""Does a sound survive what comes before it? `bench/context.py MODEL DATASET`.

A one-shot is coded on its own in training and in the library, with its onset on the
first frame. A user meets it elsewhere: a clip of several hits, the code editor's pasted
cells, a regenerated stretch ahead of it. For each training file (the model's own split)
this prints the median spectral convergence against the original of the sound, heard
through the model's path (`render`), when:

- coded alone (the baseline);
- coded after 8 and 32 frames of silence (its mel behind the log floor), the silence cut
  off again before comparing;
- coded after the previous file (their mels joined, coded in one piece);
- its own codes decoded after the previous file's codes (cells pasted behind another).

with the median per-file ratio to the baseline: 1.0 means the context costs nothing.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import torch

from distill.audio.dataset import load_prepared, scan_dataset
from distill.audio.mel import MelSpectrogram
from distill.audio.metrics import spectral_convergence
from distill.audio.windows import split_files
from distill.models.library import load_vqvae
from distill.models.magnitude import render
from distill.paths import mel_cache_dir
from distill.training.settings import TrainSettings

MAX_FILES = 24
SILENCES = (8, 32)  # frames of silence ahead of a sound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("dataset", type=Path)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model, card = load_vqvae(args.model)
    model.eval()
    config = model.config
    floor = math.log(config.mel.log_floor)
    training = card.training
    report = scan_dataset(args.dataset, config.mel, mel_cache_dir())
    train, _ = split_files(
        report.usable,
        TrainSettings.val_fraction if training.val_fraction is None else training.val_fraction,
        TrainSettings.seed if training.seed is None else training.seed,
    )
    front = MelSpectrogram(config.mel)
    sounds = []
    for sound in train[:MAX_FILES]:
        audio, _ = load_prepared(sound.path, config.mel.sample_rate)
        if audio is not None:
            waveform = torch.from_numpy(audio)
            sounds.append((waveform, front(waveform)))

    def heard(waveform: torch.Tensor, mel: torch.Tensor) -> float:
        return spectral_convergence(waveform, render(model, mel, length=len(waveform)))

    def coded_after(before: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """`mel` coded in one piece behind `before` (padded to a whole latent step)."""
        step = -before.shape[-1] % config.downsample
        before = torch.cat([before, before.new_full((before.shape[0], step), floor)], 1)
        joined = torch.cat([before, mel], 1)
        decoded = model.decode_sound(model.encode_sound(joined), joined.shape[-1])
        return decoded[:, before.shape[-1] :]

    rows: dict[str, list[float]] = {"alone": []}
    for index, (waveform, mel) in enumerate(sounds):
        frames = mel.shape[-1]
        codes = model.encode_sound(mel)
        rows["alone"].append(heard(waveform, model.decode_sound(codes, frames)))
        for silence in SILENCES:
            ahead = mel.new_full((mel.shape[0], silence), floor)
            name = f"after {silence} frames of silence"
            rows.setdefault(name, []).append(heard(waveform, coded_after(ahead, mel)))
        previous = sounds[index - 1][1]
        rows.setdefault("after the previous file, coded together", []).append(
            heard(waveform, coded_after(previous, mel))
        )
        previous_codes = model.encode_sound(previous)
        joined = model.decode_sound(torch.cat([previous_codes, codes]))
        pasted = joined[:, previous_codes.shape[0] * config.downsample :][:, :frames]
        rows.setdefault("its codes after the previous file's codes", []).append(
            heard(waveform, pasted)
        )
    print(f"model {args.model.name}, {len(sounds)} training files of {args.dataset}")
    print(f"{'the sound, heard':<44}{'SC':>8}{'ratio to alone':>16}")
    for name, values in rows.items():
        ratio = statistics.median(v / a for v, a in zip(values, rows["alone"], strict=True))
        print(f"{name:<44}{statistics.median(values):>8.3f}{ratio:>16.2f}")


if __name__ == "__main__":
    main()
