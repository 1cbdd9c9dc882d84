"""What a model's sounds are worth, per split: `bench/quality.py MODEL DATASET`.

For the training files and the held-out files of the split the model was trained with
(same val_fraction and seed), each sound coded whole (never a padded window):

- audible mel error: mean |log-mel error| over the sound's own frames.
- spectral convergence (SC) against the original audio of: the true mel through
  Griffin-Lim (the old ceiling of that path), the model's mel through Griffin-Lim, and
  the model through its decoder stage (what a user hears; "-" for a model without one),
  with the median of the per-file ratios to the ceiling (below 1.0: better than the true
  mel through Griffin-Lim); the same for the multi-resolution log-STFT distance (LSD).
- error reduction per level: 1 - e(1..k) / e(1..k-1), the share of the remaining
  audible mel error that level k removes (level 1 against decoding no codes at all).
- audible utilization per level: codes used / codebook size over every audible latent
  vector of the split, with the number of vectors counted.
- unquantized mel error: the decoder fed the encoder's latent itself, no codes: the
  floor the quantizer's levels can approach. When the full model sits near it, more or
  better levels cannot help; the encoder and decoder are what limit the sound.
- where the sound is lost (a second table), SC medians:
  - magnitude before phase: the magnitude each path hands Griffin-Lim (the ceiling's
    pseudo-inverse of the true mel; the stage's prediction) against the true STFT
    magnitude. A path whose magnitude alone is past the ceiling's final SC cannot be
    rescued by a better phase (PGHI, a vocoder's phase): its magnitude must improve.
  - two floors, from the file's true STFT magnitude: through Griffin-Lim as it is (what
    phase alone costs), and averaged over 3 neighbouring bins first (a predictor exact
    up to one bin's width of detail), each with its median ratio to the ceiling.

`--render DIR` writes, for the first few held-out files, the original, the ceiling and
the model's renderings (Griffin-Lim and decoder stage) as WAV, the mels and the STFT
magnitudes (true, and through the stage) as PNG, to listen and look at. The last line is
the decode speed: a 4 s clip from codes to audio through the path a user hears, as a
multiple of real time on this machine's threads.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch

from bench.stage_cost import decode_speed
from distill.audio.dataset import load_prepared, scan_dataset
from distill.audio.decode import write_wav
from distill.audio.images import write_mel_png
from distill.audio.mel import MelSpectrogram, filterbank_pinv, griffin_lim, mel_to_audio
from distill.audio.metrics import (
    audible_mel_error,
    log_stft_distance,
    magnitude_convergence,
    spectral_convergence,
)
from distill.audio.windows import split_files
from distill.models.health import count_codes
from distill.models.library import load_vqvae
from distill.models.magnitude import GRIFFIN_LIM_ITERS, render, stage_magnitude
from distill.paths import mel_cache_dir
from distill.training.settings import TrainSettings

RENDERED_FILES = 3
RENDER_SCALE = 4  # pixels per mel bin and frame: a 0.3 s hit is 26 frames


def measure(model, sounds, mel_front, folder: Path | None) -> dict:
    config = model.config
    levels = config.rvq_levels
    errors = [[0.0, 0] for _ in range(levels + 1)]  # (sum of |error| * frames, frames) per k
    unquantized = [0.0, 0]
    sc_ceiling, sc_model, lsd_ceiling, lsd_model = [], [], [], []
    sc_stage, lsd_stage = [], []
    losses: dict[str, list[float]] = {name: [] for name in LOSS_COLUMNS}
    codes_seen = []
    for index, sound in enumerate(sounds):
        audio, _ = load_prepared(sound.path, config.mel.sample_rate)
        if audio is None:
            continue
        waveform = torch.from_numpy(audio)
        with torch.no_grad():
            true_mel = mel_front(waveform)
            codes = model.encode_sound(true_mel)
        frames = true_mel.shape[-1]
        unquantized[0] += (
            audible_mel_error(true_mel, _unquantized(model, true_mel), frames) * frames
        )
        unquantized[1] += frames
        audible_steps = math.ceil(frames / config.downsample)
        codes_seen.append(codes[:audible_steps])
        for k in range(levels + 1):
            mel_k = model.decode_sound(codes, frames, k)
            errors[k][0] += audible_mel_error(true_mel, mel_k, frames) * frames
            errors[k][1] += frames
        model_mel = model.decode_sound(codes, frames)
        ceiling_audio = mel_to_audio(
            true_mel, config.mel, n_iter=GRIFFIN_LIM_ITERS, length=len(audio)
        )
        model_audio = mel_to_audio(
            model_mel, config.mel, n_iter=GRIFFIN_LIM_ITERS, length=len(audio)
        )
        sc_ceiling.append(spectral_convergence(waveform, ceiling_audio))
        sc_model.append(spectral_convergence(waveform, model_audio))
        lsd_ceiling.append(log_stft_distance(waveform, ceiling_audio))
        lsd_model.append(log_stft_distance(waveform, model_audio))
        stage_audio = None
        if model.stage is not None:
            stage_audio = render(model, model_mel, length=len(audio))
            sc_stage.append(spectral_convergence(waveform, stage_audio))
            lsd_stage.append(log_stft_distance(waveform, stage_audio))
        for name, value in _losses(model, mel_front, waveform, true_mel, model_mel).items():
            losses[name].append(value)
        if folder is not None and index < RENDERED_FILES:
            renders = {"ceiling": ceiling_audio, "model_griffin_lim": model_audio}
            if stage_audio is not None:
                renders["model_stage"] = stage_audio
            _render(folder, sound.path.stem, model, audio, renders, true_mel, model_mel)
    error_by_k = [s / max(n, 1) for s, n in errors]
    counts = count_codes(torch.cat(codes_seen), config.codebook_size)
    return {
        "files": len(sc_model),
        "audible_mel_error": error_by_k[levels],
        "unquantized_mel_error": unquantized[0] / max(unquantized[1], 1),
        "sc_ceiling": statistics.median(sc_ceiling),
        "sc_model": statistics.median(sc_model),
        "sc_ratio": statistics.median(m / c for m, c in zip(sc_model, sc_ceiling, strict=True)),
        "lsd_ceiling": statistics.median(lsd_ceiling),
        "lsd_model": statistics.median(lsd_model),
        "lsd_ratio": statistics.median(m / c for m, c in zip(lsd_model, lsd_ceiling, strict=True)),
        "sc_stage": _median(sc_stage),
        "sc_stage_ratio": _median([s / c for s, c in zip(sc_stage, sc_ceiling, strict=False)]),
        "lsd_stage": _median(lsd_stage),
        "lsd_stage_ratio": _median([s / c for s, c in zip(lsd_stage, lsd_ceiling, strict=False)]),
        "losses": {name: _median(values) for name, values in losses.items()},
        "floor_ratios": {
            name: _median([f / c for f, c in zip(losses[name], sc_ceiling, strict=True)])
            for name in ("phase_floor", "bins3_floor")
        },
        "error_reduction": [1 - error_by_k[k] / error_by_k[k - 1] for k in range(1, levels + 1)],
        "utilization": [int((row > 0).sum()) / config.codebook_size for row in counts],
        "vectors": int(counts[0].sum()),
    }


LOSS_COLUMNS = ("ceiling_magnitude", "stage_magnitude", "phase_floor", "bins3_floor")


def _losses(model, mel_front, waveform, true_mel, model_mel) -> dict[str, float]:
    """Where a path loses the sound: the SC of each path's magnitude before phase, and
    of the true STFT magnitude through Griffin-Lim (whole, and 3-bin averaged)."""
    mel = model.config.mel
    truth = mel_front.magnitude(waveform)
    pinv = filterbank_pinv(mel)
    figures = {
        "ceiling_magnitude": magnitude_convergence(truth, (pinv @ true_mel.exp()).clamp(min=0)),
        "stage_magnitude": math.nan,
    }
    if model.stage is not None:
        figures["stage_magnitude"] = magnitude_convergence(truth, stage_magnitude(model, model_mel))
    averaged = (
        torch.nn.functional.avg_pool1d(truth.T.unsqueeze(1), 3, 1, 1, count_include_pad=False)
        .squeeze(1)
        .T
    )
    for name, magnitude in (("phase_floor", truth), ("bins3_floor", averaged)):
        audio = griffin_lim(
            magnitude, mel.n_fft, mel.hop_length, GRIFFIN_LIM_ITERS, length=len(waveform)
        )
        figures[name] = spectral_convergence(waveform, audio)
    return figures


def _unquantized(model, mel: torch.Tensor) -> torch.Tensor:
    """(m, t) log-mel through the encoder and the quantizer's projections, no codes: the
    limit of ever more levels."""
    down = model.config.downsample
    frames = mel.shape[-1]
    padded = torch.nn.functional.pad(
        mel, (0, -frames % down), value=math.log(model.config.mel.log_floor)
    )
    latent = model.encode(padded.unsqueeze(0))
    projected = model.quantizer.project_out(model.quantizer.project_in(latent))
    return model.decode(projected)[0, :, :frames]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _render(folder, stem, model, audio, renders, true_mel, model_mel) -> None:
    config = model.config
    rate = config.mel.sample_rate
    write_wav(folder / f"{stem}_original.wav", audio, rate)
    for name, rendered in renders.items():
        write_wav(folder / f"{stem}_{name}.wav", rendered, rate)
    low = math.log(config.mel.log_floor)
    high = max(float(true_mel.max()), low + 1)
    write_mel_png(folder / f"{stem}_original.png", true_mel.numpy(), low, high, RENDER_SCALE)
    write_mel_png(folder / f"{stem}_model.png", model_mel.numpy(), low, high, RENDER_SCALE)
    # STFT magnitudes (every bin, 1 px per bin): what the stage adds inside the mel bands
    true_magnitude = torch.log(MelSpectrogram(config.mel).magnitude(torch.from_numpy(audio)))
    bins = true_magnitude.clamp(min=low)
    top = max(float(bins.max()), low + 1)
    write_mel_png(folder / f"{stem}_original_stft.png", bins.numpy(), low, top, 2)
    if model.stage is not None:
        staged = torch.log(stage_magnitude(model, model_mel)).clamp(min=low)
        write_mel_png(folder / f"{stem}_model_stage_stft.png", staged.numpy(), low, top, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--render", type=Path, help="write WAVs and PNGs of a few held-out files")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model, card = load_vqvae(args.model)
    model.eval()
    training = card.training  # the split the model was trained with (defaults: older cards)
    report = scan_dataset(args.dataset, model.config.mel, mel_cache_dir())
    train, held_out = split_files(
        report.usable,
        TrainSettings.val_fraction if training.val_fraction is None else training.val_fraction,
        TrainSettings.seed if training.seed is None else training.seed,
    )
    mel_front = MelSpectrogram(model.config.mel)
    if args.render:
        args.render.mkdir(parents=True, exist_ok=True)
    config = model.config
    print(
        f"model {args.model.name}: {config.rvq_levels} levels x {config.codebook_size} codes, "
        f"downsample {config.downsample}; dataset {args.dataset} ({len(train)} training, "
        f"{len(held_out)} held-out files)"
    )
    header = f"{'split':<9}{'files':>6}{'mel err':>9}{'unquant':>9}{'SC ceil':>9}{'SC model':>9}{'SC ratio':>9}"
    header += f"{'SC stage':>9}{'ratio':>7}{'LSD ceil':>9}{'LSD mdl':>9}{'LSD rat':>9}{'LSD stg':>9}{'ratio':>7}"
    header += "  error reduction / level   utilization / level (vectors)"
    print(header)
    results = []
    for name, sounds, folder in (("train", train, None), ("held-out", held_out, args.render)):
        r = measure(model, sounds, mel_front, folder)
        results.append((name, r))
        reductions = " ".join(f"{x:6.1%}" for x in r["error_reduction"])
        utilization = " ".join(f"{x:4.0%}" for x in r["utilization"])
        print(
            f"{name:<9}{r['files']:>6}{r['audible_mel_error']:>9.3f}"
            f"{r['unquantized_mel_error']:>9.3f}{r['sc_ceiling']:>9.3f}"
            f"{r['sc_model']:>9.3f}{r['sc_ratio']:>9.2f}{r['sc_stage']:>9.3f}{r['sc_stage_ratio']:>7.2f}"
            f"{r['lsd_ceiling']:>9.3f}{r['lsd_model']:>9.3f}{r['lsd_ratio']:>9.2f}"
            f"{r['lsd_stage']:>9.3f}{r['lsd_stage_ratio']:>7.2f}  {reductions}   {utilization} ({r['vectors']})"
        )
    print("where the sound is lost (SC medians; ratios to the ceiling's final SC):")
    print(
        f"{'split':<9}{'ceiling: magnitude':>19}{'after GL':>9}{'stage: magnitude':>17}"
        f"{'after GL':>9}{'floor: true STFT via GL':>24}{'ratio':>7}{'3-bin averaged':>15}{'ratio':>7}"
    )
    for name, r in results:
        loss, floors = r["losses"], r["floor_ratios"]
        print(
            f"{name:<9}{loss['ceiling_magnitude']:>19.3f}{r['sc_ceiling']:>9.3f}"
            f"{loss['stage_magnitude']:>17.3f}{r['sc_stage']:>9.3f}"
            f"{loss['phase_floor']:>24.3f}{floors['phase_floor']:>7.2f}"
            f"{loss['bins3_floor']:>15.3f}{floors['bins3_floor']:>7.2f}"
        )
    path = "decoder stage" if model.stage is not None else "Griffin-Lim (no decoder stage)"
    threads = torch.get_num_threads()
    print(
        f"decode: a 4 s clip from codes through {path}: {decode_speed(model):.1f}x real time ({threads} threads)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
