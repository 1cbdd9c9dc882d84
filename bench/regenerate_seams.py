"""Does ranking regenerated stretches by how they lead on make smoother seams?

PYTHONPATH=. .venv/bin/python bench/regenerate_seams.py MODEL DATASET [--files 20] [--render DIR]

For each of up to --files sounds of DATASET at least twice the stretch long, the middle
stretch (a quarter of the sound) is drawn anew by the model's prior with the editor's
regenerate: once keeping the first draw (candidates=1), once ranked among 4 draws
(the default). The seam is measured on the decoded mel: the mean |log-mel| jump between
the last frame of the stretch and the first frame after it, against the same jump in the
sound's own decode (ratio; 1.0 = as smooth as the original). --render writes WAVs and mel
PNGs of a few: original decode, first draw, ranked draw.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import torch

from distill.audio.decode import write_wav
from distill.audio.formats import find_audio_files, is_supported
from distill.audio.images import write_mel_png
from distill.inference.codes import CodesError, decode_grid, encode_file
from distill.inference.regenerate import regenerate
from distill.models.library import load_with_prior
from distill.models.sampling import Sampling


def seam(vqvae, codes, step: int) -> float:
    mel = vqvae.decode_sound(torch.from_numpy(codes.T.copy()))
    frame = step * vqvae.config.downsample
    return float((mel[:, frame] - mel[:, frame - 1]).abs().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--render", type=Path)
    args = parser.parse_args()
    loaded = load_with_prior(args.model)
    vqvae = loaded.vqvae
    ratios_first, ratios_ranked = [], []
    rendered = 0
    for path in (p for p in find_audio_files(args.dataset) if is_supported(p)):
        if len(ratios_first) >= args.files:
            break
        try:
            grid = encode_file(vqvae, loaded.card.name, path)
        except CodesError:
            continue
        if grid.steps < 16:
            continue
        start, end = grid.steps * 3 // 8, grid.steps * 5 // 8
        own = seam(vqvae, grid.codes, end)
        if own < 1e-3:
            continue  # silence on both sides: no seam to judge
        first = regenerate(loaded, grid, start, end, Sampling(), seed=0, candidates=1).grid
        ranked = regenerate(loaded, grid, start, end, Sampling(), seed=0).grid
        ratios_first.append(seam(vqvae, first.codes, end) / own)
        ratios_ranked.append(seam(vqvae, ranked.codes, end) / own)
        if args.render and rendered < 3:
            rendered += 1
            for label, g in (("original", grid), ("first", first), ("ranked", ranked)):
                stem = args.render / f"{path.stem}_{label}"
                write_wav(stem.with_suffix(".wav"), decode_grid(vqvae, g), g.sample_rate)
                mel = vqvae.decode_sound(torch.from_numpy(g.codes.T.copy())).numpy()
                floor = math.log(vqvae.config.mel.log_floor)
                write_mel_png(
                    stem.with_suffix(".png"), mel, floor, max(float(mel.max()), floor + 1)
                )
    print(f"{len(ratios_first)} sounds, middle quarter regenerated, seam jump / the original's:")
    print(f"  first draw:          median {statistics.median(ratios_first):.2f}")
    print(f"  ranked of 4 draws:   median {statistics.median(ratios_ranked):.2f}")
    better = sum(r < f for r, f in zip(ratios_ranked, ratios_first, strict=True))
    print(f"  ranked smoother than the first draw on {better} of {len(ratios_first)}")


if __name__ == "__main__":
    main()
