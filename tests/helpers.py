"""What tests share: tiny generated datasets, a tiny model's settings, a real server's
clients and fake-free shortcuts into its store. Imported as `from helpers import ...`;
the pytest fixtures built on them are in conftest.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from distill.audio.mel_config import MelConfig
from distill.audio.synth import chirp, click, noise_burst, tone
from distill.events import Event, Payload
from distill.training.prior import PriorSpec
from distill.training.settings import PriorSettings
from distill.training.vqvae import TrainSettings, TrainSpec

# A small front-end and model: seconds of CPU per test, not minutes.
TINY_MEL = MelConfig(sample_rate=8000, n_fft=256, hop_length=64, n_mels=24)
TINY_MODEL = {
    "window_frames": 32,
    "hidden_channels": 16,
    "latent_dim": 8,
    "codebook_size": 8,
    "codebook_dim": 4,
    "rvq_levels": 2,
    "kmeans_iters": 2,
    "downsample": 4,  # coarser than the default: keeps the tiny priors short
    "decoder_stage_channels": 8,
}

TINY_PRIOR = {"hidden_size": 16, "layers": 1, "heads": 2}


def model_card(name: str, created: str = "today") -> dict:
    """The card of a model that was never trained: every section a trained one has."""
    return {
        "name": name,
        "created": created,
        "run_id": None,
        "dataset": {"path": "/sounds", "fingerprint": "0" * 16, "files": 6, "seconds": 3.0},
        "health": [],
        "curves": {"train_loss": [], "val_loss": []},
        "training": {"epochs": 0, "best_epoch": 0, "best_val_loss": float("nan")},
    }


def prior_card(training_files: list[str], seconds_per_step: float) -> dict:
    """The card of a prior that was never trained, over `training_files`."""
    return {
        "run_id": None,
        "created": "today",
        "dataset": {"path": "/sounds", "files": len(training_files), "one_shot": True},
        "training_files": training_files,
        "seconds_per_step": seconds_per_step,
        "curves": {"val_perplexity": []},
        "training": {
            "epochs": 0,
            "best_epoch": 0,
            "best_val_perplexity": float("nan"),
            "memorization_threshold": 2.0,
        },
    }


TINY_PRIOR_SETTINGS = {"batch_size": 4, "min_steps_per_epoch": 4, "generation_clips": 2}


def write_good_sounds(folder: Path, count: int = 6, seed: int = 0) -> list[Path]:
    """Tones, chirps, noise and clicks at mixed rates and channel counts."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    makers = [
        lambda sr: tone(220 * (1 + rng.integers(0, 8)), 0.6, sr),
        lambda sr: chirp(200, 2000, 0.8, sr),
        lambda sr: noise_burst(0.4, sr, rng),
        lambda sr: click(sr, 0.05),
    ]
    rates = (8000, 16000, 44100, 96000)
    paths = []
    for i in range(count):
        sr = rates[i % len(rates)]
        audio = makers[i % len(makers)](sr)
        if i % 3 == 2:  # stereo
            audio = np.stack([audio, 0.5 * audio], axis=1)
        ext = (".wav", ".flac", ".ogg")[i % 3]
        path = folder / f"good_{i:02d}{ext}"
        sf.write(path, audio, sr)
        paths.append(path)
    return paths


def write_bad_sounds(folder: Path) -> dict[str, str]:
    """Files distill must skip, by name, with a word their reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / "silence.wav", np.zeros(8000, dtype=np.float32), 8000)
    sf.write(folder / "empty.wav", np.zeros(0, dtype=np.float32), 8000)
    (folder / "notes.txt").write_text("not audio")
    (folder / "garbage.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    full = folder / "full.wav"
    sf.write(full, tone(440, 1.0, 8000), 8000)
    (folder / "truncated.flac").write_bytes(_flac_bytes(tone(440, 1.0, 8000))[:200])
    full.unlink()
    blip = np.zeros(8000, dtype=np.float32)
    blip[4000] = 0.9  # one sample: nothing left after trimming
    sf.write(folder / "blip.wav", blip, 8000)
    return {
        "silence.wav": "silent",
        "empty.wav": "empty",
        "notes.txt": "unsupported",
        "garbage.wav": "unreadable",
        "truncated.flac": "unreadable",
        "blip.wav": "too short",
    }


def _flac_bytes(audio: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    sf.write(buffer, audio, 8000, format="FLAC")
    return buffer.getvalue()


def tiny_spec(
    dataset: Path, tmp_path: Path, epochs: int = 2, name: str = "tiny", **overrides
) -> TrainSpec:
    return TrainSpec(
        dataset=dataset,
        run_dir=tmp_path / "runs" / name,
        model_path=tmp_path / "models" / f"{name}.distill",
        cache_dir=tmp_path / "cache",
        settings=TrainSettings(
            epochs=epochs, batch_size=4, min_steps_per_epoch=2, preview_every=1, stage_steps=4
        ),
        overrides={**TINY_MODEL, **overrides},
        mel=TINY_MEL,
        run_id=name,
    )


def tiny_prior_spec(
    model_path: Path,
    dataset: Path,
    tmp_path: Path,
    epochs: int = 2,
    name: str = "prior",
    **overrides,
) -> PriorSpec:
    return PriorSpec(
        model_path=model_path,
        dataset=dataset,
        run_dir=tmp_path / "runs" / name,
        cache_dir=tmp_path / "cache",
        settings=PriorSettings(epochs=epochs, **TINY_PRIOR_SETTINGS),
        overrides={**TINY_PRIOR, **overrides},
        run_id=name,
    )


# -- a real server: distill.server.serve.ServerThread on 127.0.0.1 and a free port --------

TINY_SETTINGS = {"batch_size": 4, "min_steps_per_epoch": 2, "preview_every": 1, "stage_steps": 4}


def tiny_run_request(dataset: Path, epochs: int = 2, **settings) -> dict:
    """The JSON body of POST /api/runs for a tiny, seconds-long run."""
    return {
        "dataset": str(dataset),
        "settings": {**TINY_SETTINGS, "epochs": epochs, **settings},
        "overrides": dict(TINY_MODEL),
        "mel": TINY_MEL.to_dict(),
    }


def stamp(run_id: str, payloads: list[Payload], first_seq: int = 1) -> list[Event]:
    """Wrap payloads the way the core does: consecutive seqs, increasing timestamps."""
    return [
        Event(run_id, seq, p.kind, p.to_dict(), ts=1000.0 + seq)
        for seq, p in enumerate(payloads, first_seq)
    ]


def page_client(server):
    """An HTTP client to a ServerThread that sends the Origin a page of it would."""
    import httpx

    origin = f"http://127.0.0.1:{server.info.port}"
    return httpx.Client(
        base_url=server.url, headers={"Origin": origin}, trust_env=False, timeout=120
    )


def run_events(server, run_id: str) -> list[dict]:
    """A run's events to its end, over the CLI's WebSocket stream."""
    import asyncio
    import json

    from websockets.asyncio.client import connect

    async def read() -> list[dict]:
        url = f"{server.ws_url}/ws/runs/{run_id}/events"
        async with connect(url, proxy=None) as ws:
            return [json.loads(message) async for message in ws]

    return asyncio.run(read())


def write_preview_run(server, run_id: str, decoder_stage: bool, seconds: float = 2.0) -> None:
    """A finished run in a ServerThread's store with one preview clip, its files on disk:
    `seconds`-long tones at a different pitch for each sound. With `decoder_stage`, the
    clip has the model through Griffin-Lim beside the decoder stage's rendering."""
    from distill.audio.images import write_mel_png
    from distill.audio.synth import tone
    from distill.events import (
        PreviewClip,
        PreviewReady,
        RunCompleted,
        RunQueued,
        RunStarted,
    )
    from distill.paths import runs_dir

    folder = runs_dir(server.settings.home) / run_id / "previews" / "epoch_001"
    sounds = ["original", "ceiling", "model", "level_1", "level_2"]
    sounds += ["griffin_lim"] if decoder_stage else []
    folder.mkdir(parents=True, exist_ok=True)
    for index, sound in enumerate(sounds):
        sf.write(folder / f"clip1_{sound}.wav", tone(220.0 * (index + 1), seconds, 8000, 0.5), 8000)
    mel = np.random.default_rng(0).random((24, 64))  # (mels, frames): any picture will do
    for image in ("original", "model"):
        write_mel_png(folder / f"clip1_{image}.png", mel, 0, 1)
    path = "previews/epoch_001/clip1_"
    clip = PreviewClip(
        "clip1",
        original_wav=path + "original.wav",
        ceiling_wav=path + "ceiling.wav",
        reconstruction_wav=path + "model.wav",
        level_wavs=[path + "level_1.wav", path + "level_2.wav"],
        original_png=path + "original.png",
        reconstruction_png=path + "model.png",
        griffin_lim_wav=path + "griffin_lim.wav" if decoder_stage else "",
    )
    payloads = [
        RunQueued("vqvae", "/sounds", {}),
        RunStarted("vqvae", "/sounds", 2, 0, 1, {}),
        PreviewReady(1, [clip]),
        RunCompleted(1, 0.5, "", 1.0),
    ]
    events = stamp(run_id, payloads)

    async def store() -> None:
        await server.core.store.create_run(run_id, "vqvae", "/sounds", {})
        await server.core.store.append(events)

    server.call(store())


# -- the browser tests' Chromium: Debian's, driven by Playwright (nothing downloaded) ------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
