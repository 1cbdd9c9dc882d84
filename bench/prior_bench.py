"""The prior: KV-cache generation, generate's real-time factor, training through the core.

    .venv/bin/python bench/prior_bench.py [--tokens 1000] [--epochs 4] [--files 24]

1. Generation with the KV cache against recomputing the whole window every step: same
   model, same seeds, `--tokens` tokens per clip; the codes must be identical. Measured
   for a prior whose window holds all the tokens (the cache's best case, what "at 1,000
   tokens" means), and for the default window of one VQ-VAE window (96 tokens), which
   slides: there the uncached side recomputes at most 96 tokens a step.
2. `generate_clips` (what `distill generate` runs) on CPU: seconds of audio per second,
   for the default model sizes of a small and of a large dataset. Weights are random:
   speed does not depend on their values. Split into sampling, decoding + Griffin-Lim.
3. Prior training steps/s: a bare PyTorch loop, `train_prior` called directly, and
   `train_prior` through the core (spawned worker, bus, recorder, SQLite, one follower).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

import torch

from distill.inference.generate import GenerateSpec, generate_clips
from distill.models.config import PriorConfig, VQVAEConfig
from distill.models.library import load_with_prior, save_prior, save_vqvae
from distill.models.magnitude import render
from distill.models.prior import CodePrior, token_mask
from distill.models.rvqvae import ConvVQVAE
from distill.models.sampling import generate_codes


def seeds(n: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(i) for i in range(n)]


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def kv_cache(tokens: int) -> None:
    levels = 4
    steps = math.ceil(tokens / levels)
    cases = [
        ("window holds every token, 128 hidden / 2 layers", 128, 2, 4, steps),
        ("window holds every token, 256 hidden / 4 layers", 256, 4, 4, steps),
        ("default window (32 steps = 128 tokens, slides)", 128, 2, 4, 32),
    ]
    print(f"kv cache: one clip of {steps * levels} tokens ({levels} levels x {steps} steps)")
    for name, hidden, layers, heads, context in cases:
        torch.manual_seed(0)
        config = PriorConfig(levels, 64, context, hidden, layers, heads, dropout=0.1)
        prior = CodePrior(config).eval()
        generate_codes(prior, 8, seeds(1))  # warm-up
        cached, cached_s = timed(lambda: generate_codes(prior, steps, seeds(1)))  # noqa: B023
        full, full_s = timed(lambda: generate_codes(prior, steps, seeds(1), cached=False))  # noqa: B023
        same = torch.equal(cached, full)
        print(
            f"  {name:50s} cached {cached_s:6.2f} s, recomputed {full_s:6.2f} s, "
            f"ratio {full_s / cached_s:5.1f}x, same codes: {same}"
        )
        assert same, "cached and recomputed generation disagree"


def write_random_model(path: Path, files: int) -> Path:
    """A default-sized VQ-VAE and prior for `files` files, random weights, in one file."""
    torch.manual_seed(0)
    vq_config = VQVAEConfig.from_file_count(files)
    vqvae = ConvVQVAE(vq_config).train()
    with torch.no_grad():  # initialise the codebooks (k-means) as training would
        vqvae(torch.randn(8, vq_config.mel.n_mels, vq_config.window_frames * 8))
    vqvae.eval()
    created = datetime.now(UTC).isoformat()
    card = {
        "name": path.stem,
        "created": created,
        "dataset": {"path": "/bench", "fingerprint": "0" * 16, "files": files, "seconds": 0.0},
        "health": [],
        "curves": {},
        "training": {"epochs": 0, "best_epoch": 0, "best_val_loss": float("nan")},
    }
    save_vqvae(path, vqvae, card)
    config = PriorConfig.from_file_count(
        files, vq_config.rvq_levels, vq_config.codebook_size, vq_config.window_steps
    )
    codes = [torch.randint(0, vq_config.codebook_size, (64, vq_config.rvq_levels))] * files
    prior_card = {
        "run_id": "bench",
        "dataset": {"path": "/bench", "files": files},
        "training_files": [f"f{i}.wav" for i in range(files)],
        "seconds_per_step": vq_config.downsample
        * vq_config.mel.hop_length
        / vq_config.mel.sample_rate,
        "curves": {},
        "training": {
            "epochs": 0,
            "best_epoch": 0,
            "best_val_perplexity": float("nan"),
            "memorization_threshold": float("nan"),
        },
    }
    save_prior(path, CodePrior(config), prior_card, codes, created)
    return path


def realtime_factor(folder: Path, seconds: float, count: int, repeats: int) -> None:
    print(
        f"generate on CPU ({torch.get_num_threads()} threads): {count} clips of {seconds:g} s, "
        f"median of {repeats}"
    )
    for files in (20, 200):
        path = write_random_model(folder / f"bench{files}.distill", files)
        spec = GenerateSpec(path, folder / f"out{files}", seconds=seconds, count=count)
        generate_clips(GenerateSpec(path, folder / "warm", seconds=0.5))  # warm-up
        results = [generate_clips(spec) for _ in range(repeats)]
        result = sorted(results, key=lambda r: r.realtime_factor)[len(results) // 2]
        loaded = load_with_prior(path)
        steps = math.ceil(seconds / loaded.prior_card.seconds_per_step)
        codes, sample_s = timed(lambda: generate_codes(loaded.prior, steps, seeds(count)))  # noqa: B023

        def decode(loaded=loaded, codes=codes):
            for i in range(count):  # the path a user hears: the stage when there is one
                render(loaded.vqvae, loaded.vqvae.decode_indices(codes[i : i + 1])[0])

        _, decode_s = timed(decode)
        c = loaded.prior.config
        print(
            f"  {files:3d} files (prior {c.hidden_size} hidden / {c.layers} layers, "
            f"{c.rvq_levels} levels x {c.codebook_size} codes): real-time factor "
            f"{result.realtime_factor:5.1f}x ({result.wall_seconds:.2f} s for "
            f"{seconds * count:g} s of audio); sampling {sample_s:.2f} s, "
            f"decode + Griffin-Lim {decode_s:.2f} s"
        )


def bare_loop(spec, epochs: int) -> float:
    """The textbook loop over the same prior, crops and loss: no events, no validation."""
    from distill.models.library import load_vqvae
    from distill.training.prior import prepare_codes
    from distill.training.prior_data import CodeCropSampler

    settings = spec.settings
    torch.manual_seed(settings.seed)
    vqvae, card = load_vqvae(spec.model_path)
    data = prepare_codes(spec, vqvae, card)
    config = data.config
    sampler = CodeCropSampler(data.train, config.context_steps, torch.Generator().manual_seed(0))
    steps = max(
        settings.min_steps_per_epoch, math.ceil(sampler.natural_windows / settings.batch_size)
    )
    prior = CodePrior(config)
    optimizer = torch.optim.AdamW(prior.parameters(), lr=settings.learning_rate)
    marks = []
    for _ in range(epochs):
        prior.train()
        epoch_marks = []
        for _ in range(steps):
            batch = sampler.batch(settings.batch_size)
            losses = prior.loss(batch.codes)
            valid = token_mask(batch.valid, config.rvq_levels)
            loss = (losses * valid).sum() / valid.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
            optimizer.step()
            epoch_marks.append(time.perf_counter())
        marks.append(epoch_marks)
    return sum(len(m) - 1 for m in marks) / sum(m[-1] - m[0] for m in marks)


class Timeline:
    """When each step and epoch event arrived."""

    def __init__(self) -> None:
        self.steps: dict[int, list[float]] = {}
        self.epoch_ends: list[tuple[float, int]] = []

    def saw(self, kind: str, payload: dict) -> None:
        now = time.perf_counter()
        if kind == "prior_step_metrics":
            self.steps.setdefault(payload["epoch"], []).append(now)
        elif kind == "prior_epoch_metrics":
            self.epoch_ends.append((now, sum(len(s) for s in self.steps.values())))

    def step_phase_rate(self) -> float:
        """Steps/s from each epoch's first step to its last: only valid where events are
        timed as emitted; a follower receives them in batches."""
        marks = list(self.steps.values())
        return sum(len(m) - 1 for m in marks) / sum(m[-1] - m[0] for m in marks)

    def steady_rate(self) -> float:
        (t0, s0), (t1, s1) = self.epoch_ends[0], self.epoch_ends[-1]
        return (s1 - s0) / (t1 - t0)


async def training(folder: Path, epochs: int, files: int, repeats: int) -> None:
    from distill.audio.synth import make_demo_set
    from distill.core.core import Core, PriorRequest
    from distill.training.jobs import RUN_TYPES
    from distill.training.prior import PriorSpec, train_prior
    from distill.training.settings import PriorSettings, TrainSettings
    from distill.training.vqvae import TrainSpec, train_vqvae

    home = folder / "home"
    make_demo_set(folder / "sounds", count=files, seed=3)
    model_path = home / "models" / "bench.distill"
    train_vqvae(
        TrainSpec(
            dataset=folder / "sounds", run_dir=folder / "vq", model_path=model_path,
            cache_dir=home / "cache" / "mel", settings=TrainSettings(epochs=1, preview_every=10**6),
        ),
        lambda payload: None,
    )  # fmt: skip
    settings = {"epochs": epochs}
    spec = PriorSpec(
        model_path=model_path, dataset=folder / "sounds", run_dir=folder / "direct",
        cache_dir=home / "cache" / "mel", settings=PriorSettings(**settings),
    )  # fmt: skip
    bare_loop(spec, 1)  # warm-up
    bares, directs, cores = [], [], []
    async with Core(home, run_types=RUN_TYPES) as core:
        for _ in range(repeats):  # interleaved, so drift in machine load hits all three
            bares.append(bare_loop(spec, epochs))
            direct = Timeline()
            train_prior(spec, lambda payload, d=direct: d.saw(payload.kind, payload.to_dict()))
            directs.append(direct)
            core_line = Timeline()
            run_id = await core.submit("prior", PriorRequest("bench", settings=settings))
            async for event in core.follow(run_id):
                core_line.saw(event.kind, event.payload)
            cores.append(core_line)
    bare = median(bares)
    direct_steps = median(d.step_phase_rate() for d in directs)
    direct_steady = median(d.steady_rate() for d in directs)
    core_steady = median(c.steady_rate() for c in cores)
    steps = sum(len(s) for s in directs[0].steps.values())
    loop = direct_steps / bare
    core_cost = core_steady / direct_steady
    print(
        f"prior training: {files} files, {epochs} epochs, {steps} steps, batch 16, median of {repeats}"
    )
    print(f"  bare loop, steps only                       {bare:7.2f} steps/s")
    print(
        f"  train_prior direct, steps only              {direct_steps:7.2f} steps/s"
        f"   ratio to bare {loop:.3f}"
    )
    print(
        f"  epoch 1 to {epochs} with validation + checkpoints: direct "
        f"{direct_steady:.2f}, through the core {core_steady:.2f} steps/s, "
        f"ratio {core_cost:.3f}"
    )
    print(
        f"  through the core against the bare loop (the two ratios' product): {loop * core_cost:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--count", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    kv_cache(args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        realtime_factor(Path(tmp), args.seconds, args.count, args.repeats)
        asyncio.run(training(Path(tmp), args.epochs, args.files, args.repeats))


if __name__ == "__main__":
    main()
