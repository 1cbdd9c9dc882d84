"""Bounded work: is a small edit still interactive while the editor and generate routes
are hammered with the largest requests they accept, and how much memory does it take?

.venv/bin/python bench/bounded.py [--edits 10] [--hammers 3]

A small model with a prior is trained on generated sounds, then a real `distill serve`
runs on it. A small edit (decoding a 1 s grid, as the editor does after each change) is
timed first on the idle server, then while `--hammers` threads each keep sending the
largest legal requests, in turn: a decode of a 3-minute grid (the editor's cap), a
generate request of 8 clips x 60 s (the form's caps; a run in the core's pool),
cancelled after 5 s and sent again, and a "Variation" of the 3-minute grid (every step
drawn anew by the prior). Prints the small edit's median and p90 both ways and their
ratio, how long the 3-minute decodes and Variations took meanwhile, and the peak memory
(RSS) of the server and all its helper processes together, sampled every 0.1 s.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from distill.audio.mel_config import MelConfig
from distill.audio.synth import make_demo_set
from distill.inference.codes import MAX_EDIT_SECONDS, encode_file
from distill.models.library import load_vqvae
from distill.server.discovery import read_server_file
from distill.training.prior import PriorSpec, train_prior
from distill.training.settings import PriorSettings, TrainSettings
from distill.training.vqvae import TrainSpec, train_vqvae

MEL = MelConfig(sample_rate=16000, n_fft=512, hop_length=128, n_mels=48)


def train(folder: Path) -> Path:
    sounds = folder / "sounds"
    make_demo_set(sounds, count=8)
    spec = TrainSpec(
        dataset=sounds, run_dir=folder / "runs" / "m",
        model_path=folder / "home" / "models" / "bench.distill", cache_dir=folder / "cache",
        settings=TrainSettings(epochs=1, stage_steps=20, min_steps_per_epoch=8), mel=MEL,
        overrides={"hidden_channels": 32, "latent_dim": 16, "codebook_size": 32},
    )  # fmt: skip
    train_vqvae(spec, lambda event: None)
    prior = PriorSpec(
        model_path=spec.model_path, dataset=sounds, run_dir=folder / "runs" / "p",
        cache_dir=folder / "cache", settings=PriorSettings(epochs=1, min_steps_per_epoch=8),
        overrides={"hidden_size": 64, "layers": 2, "heads": 2},
    )  # fmt: skip
    train_prior(prior, lambda event: None)
    return spec.model_path


def line(times: list[float]) -> str:
    p90 = statistics.quantiles(times, n=10)[8]
    return f"median {statistics.median(times) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms"


def tree_rss(pid: int) -> int:
    """Bytes resident in `pid` and every process under it, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0
    for member in tree:
        try:
            status = Path(f"/proc/{member}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) * 1024  # type: ignore[index]
        except (OSError, TypeError):
            continue
    return total


def small_edit_times(client: httpx.Client, grid: dict, count: int) -> list[float]:
    times = []
    for _ in range(count):
        began = time.perf_counter()
        response = client.post("/models/bench/edit/decode", json={"grid": grid})
        times.append(time.perf_counter() - began)
        assert response.status_code == 200, response.text
    return times


def hammer(
    url: str, origin: str, big_grid: dict, stop: threading.Event, which: int,
    big: dict[str, list[float]],
) -> None:  # fmt: skip
    """Sends the largest requests until `stop`; the times of the 3-minute decodes and
    Variations go to `big`."""
    with httpx.Client(base_url=url, headers={"Origin": origin}, trust_env=False,
                      timeout=1800) as client:  # fmt: skip
        seed = 0
        while not stop.is_set():
            if which % 3 == 0:
                began = time.perf_counter()
                response = client.post("/models/bench/edit/decode", json={"grid": big_grid})
                assert response.status_code == 200, response.text
                big["decode"].append(time.perf_counter() - began)
            elif which % 3 == 2:
                began, seed = time.perf_counter(), seed + 1
                body = {"grid": big_grid, "start": 0, "end": len(big_grid["codes"][0]),
                        "seed": seed}  # fmt: skip
                response = client.post("/models/bench/edit/regenerate", json=body)
                assert response.status_code == 200, response.text
                big["variation"].append(time.perf_counter() - began)
            else:
                form = {"seconds": "60", "count": "8", "mode": "continuous"}
                started = client.post("/models/bench/generate", data=form)
                assert started.status_code == 303, started.text
                run_id = started.headers["location"].rsplit("/", 1)[-1]  # a run on the core
                stop.wait(5)
                client.post(f"/runs/{run_id}/cancel")  # then waited for: none pile up
                while client.get(f"/api/runs/{run_id}").json()["status"] in ("queued", "running"):
                    time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--hammers", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="distill-bounded-bench-"))
    model = train(folder)
    vqvae, _ = load_vqvae(model)
    sound = sorted((folder / "sounds").iterdir())[0]
    small = encode_file(vqvae, "bench", sound).to_json()
    steps_per_second = MEL.sample_rate / small["samples_per_step"]
    small["codes"] = [row[: round(steps_per_second)] for row in small["codes"]]  # 1 s
    rng = np.random.default_rng(0)
    big_steps = int(MAX_EDIT_SECONDS * steps_per_second)
    big = {**small, "codes": rng.integers(0, small["codebook_size"],
                                          (len(small["codes"]), big_steps)).tolist()}  # fmt: skip

    env = {**os.environ, "DISTILL_HOME": str(folder / "home"),
           "DISTILL_ALLOWED_ROOTS": str(folder)}  # fmt: skip
    server = subprocess.Popen([sys.executable, "-m", "distill.cli.main", "serve", "--port", "0"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    peak, sampling = [0], threading.Event()

    def sample() -> None:
        while not sampling.wait(0.1):
            peak[0] = max(peak[0], tree_rss(server.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        deadline = time.monotonic() + 120
        while (info := read_server_file(folder / "home")) is None:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        sampler.start()
        origin = info.url.rstrip("/")
        with httpx.Client(base_url=info.url, headers={"Origin": origin}, trust_env=False,
                          timeout=600) as client:  # fmt: skip
            small_edit_times(client, small, 2)  # the editor's helper started, model loaded
            idle = small_edit_times(client, small, args.edits)
            idle_peak = peak[0]
            print(f"small edit, idle server: {line(idle)}", flush=True)
            stop = threading.Event()
            big_times: dict[str, list[float]] = {"decode": [], "variation": []}
            hammers = [threading.Thread(target=hammer,
                                        args=(info.url, origin, big, stop, i, big_times))
                       for i in range(args.hammers)]  # fmt: skip
            for thread in hammers:
                thread.start()
            time.sleep(3)  # the big requests under way
            loaded = small_edit_times(client, small, args.edits)
            stop.set()
            for thread in hammers:
                thread.join()
    finally:
        sampling.set()
        server.terminate()
        server.wait(timeout=120)

    print(f"small edit (decode 1 s, {len(idle)} times), idle server:   {line(idle)}")
    kinds = ("3 min decode", "8 x 60 s generate", "3 min Variation")[: args.hammers]
    print(f"small edit under {args.hammers} hammers ({', '.join(kinds)}): {line(loaded)}")
    ratio = statistics.median(loaded) / statistics.median(idle)
    print(f"ratio loaded / idle (medians): {ratio:.1f}x")
    for kind, times in big_times.items():
        print(f"3-minute {kind}s meanwhile: {len(times)}, median {statistics.median(times):.1f} s"
              if times else f"3-minute {kind}s: none ended")  # fmt: skip
    print(
        f"server + helpers memory: {idle_peak / 2**30:.2f} GiB idle, peak {peak[0] / 2**30:.2f} GiB"
    )


if __name__ == "__main__":
    main()
