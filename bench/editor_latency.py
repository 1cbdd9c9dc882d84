"""The code editor: from an edit to the new sound playable in Chromium, and regenerating
1 s of a 4 s sound with the prior.

.venv/bin/python bench/editor_latency.py [--edits 30]

A model of the default size (its decoder stage included) and a small prior are trained
on generated sounds plus one 4 s sound, then the editor is opened on the 4 s sound in
Debian's Chromium. Each edit is a click on a palette code with a cell selected, timed in
the page from the click to the moment the decoded WAV is the player's source. Targets:
edit -> playable under 300 ms at the median on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from distill.audio.mel_config import MelConfig
from distill.audio.synth import make_demo_set, tone
from distill.inference.codes import encode_file
from distill.inference.regenerate import regenerate
from distill.models.library import load_with_prior
from distill.models.sampling import Sampling
from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings
from distill.training.prior import PriorSpec, train_prior
from distill.training.settings import PriorSettings, TrainSettings
from distill.training.vqvae import TrainSpec, train_vqvae

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip


def train(folder: Path) -> Path:
    sounds = folder / "sounds"
    make_demo_set(sounds, count=12)
    sample_rate = MelConfig().sample_rate
    sf.write(sounds / "long.wav", tone(110.0, 4.0, sample_rate, decay=0.3), sample_rate)
    home = folder / "home"
    spec = TrainSpec(
        dataset=sounds, run_dir=folder / "runs" / "m", model_path=home / "models" / "bench.distill",
        cache_dir=folder / "cache", settings=TrainSettings(epochs=2, stage_steps=100),
    )  # fmt: skip
    train_vqvae(spec, lambda event: None)
    prior = PriorSpec(
        model_path=spec.model_path, dataset=sounds, run_dir=folder / "runs" / "p",
        cache_dir=folder / "cache", settings=PriorSettings(epochs=1),
    )  # fmt: skip
    train_prior(prior, lambda event: None)
    return spec.model_path


def edit_latencies(folder: Path, edits: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    settings = ServerSettings.for_host(folder / "home", "127.0.0.1", 0, allowed_roots=(folder,))
    with ServerThread(settings) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
        )
        page = browser.new_page()
        page.goto(f"{server.url}/models/bench/edit?sound=long.wav")
        page.locator("#editor[data-version='1']").wait_for(timeout=120_000)
        times = []
        for i in range(edits):
            step = 5 + i % 40
            page.locator(f"#grid .cell[data-level='0'][data-step='{step}']").click()
            version = page.evaluate("distillEditor.version()")
            code = (page.evaluate(f"distillEditor.codes()[0][{step}]") + 1) % 8
            times.append(
                page.evaluate(
                    """async ([code, version]) => {
                        const start = performance.now();
                        document.querySelector(`#palette button[data-code='${code}']`).click();
                        while (distillEditor.version() === version) await new Promise(r => setTimeout(r, 1));
                        return performance.now() - start;
                    }""",
                    [code, version],
                )
            )
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=30)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="distill-editor-bench-"))
    model = train(folder)
    loaded = load_with_prior(model)
    grid = encode_file(loaded.vqvae, "bench", folder / "sounds" / "long.wav")
    print(f"4 s sound: {grid.codes.shape[0]} levels x {grid.steps} steps ({grid.seconds:.2f} s)")

    times = edit_latencies(folder, args.edits)
    q = statistics.quantiles(times, n=10)
    print(
        f"edit -> playable in Chromium, {len(times)} edits: median {statistics.median(times):.0f} ms,"
        f" p90 {q[8]:.0f} ms, min {min(times):.0f} ms (target: median under 300 ms)"
    )

    one_second = grid.step_at(1.0)
    start = grid.step_at(1.5)
    runs = []
    for seed in range(5):
        began = time.perf_counter()
        regenerate(loaded, grid, start, start + one_second, Sampling(), seed)
        runs.append(time.perf_counter() - began)
    print(
        f"regenerate 1 s ({one_second} steps, 4 candidates ranked) of the 4 s sound:"
        f" median {statistics.median(runs) * 1000:.0f} ms, min {min(runs) * 1000:.0f} ms"
        f" over {len(runs)} seeds"
    )
    assert np.isfinite(runs).all()


if __name__ == "__main__":
    main()
