"""Speed on a busy machine: each measure quiet, then beside competing processes, as a ratio.

    .venv/bin/python bench/contention.py [--policy both|fit|active] [--seconds 2] [--files 20]

Measures, for the default model sizes of a `--files` set (random weights and data: speed
does not depend on their values): VQ-VAE training steps/s, prior training steps/s, and
generate's real-time factor (sampling, decoding and Griffin-Lim of one 2 s clip).
Each measure runs quiet, beside one busy spinner (`yes`), beside two, beside a second
distill training (a VQ-VAE training under the same policy), and, for the two trainings,
beside distill's own helper decoding in a loop (the editor's work), as a server runs them.

Policies: "fit" is what distill does (distill/threads.py: each torch process's share of
the cores, OpenMP's passive wait policy); "active" is what it did before (torch's
default: every core, OpenMP's threads spinning while they wait). Each measure and each
competitor is its own spawned process, whose policy is set before torch loads.

Every figure is a ratio to the same measure alone and quiet under the same policy, from
this run; "server share" is the training as a server's worker runs it (its helper beside
it: fewer threads under "fit"), and the last column compares the policies' quiet rates. Target: 0.45x or
more with one competing process (one of two cores taken: 0.5 is the limit).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from distill.threads import torch_processes

HERE = Path(__file__).resolve()
MEASURES = ("vqvae", "prior", "generate")
SCENARIOS = ("quiet", "1 spinner", "2 spinners", "2nd training", "helper decoding")
GENERATE_SECONDS = 2.0  # a clip: short, since the old policy on a busy machine makes it crawl
# what a server with one worker tells its worker and its helper to share the cores among
SERVER_PROCESSES = torch_processes(1)


# -- the child: one measure (or one competitor) in its own process ---------------------


def apply_policy(policy: str, processes: int) -> None:
    """Before torch loads: distill's fit, or torch's own defaults (every core, spinning)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "OMP_WAIT_POLICY", "DISTILL_THREADS"):  # fmt: skip
        os.environ.pop(name, None)
    if policy == "fit":
        from distill.threads import fit_threads

        fit_threads(processes)


def step_function(measure: str, files: int):
    """A function doing one unit of `measure`, and what one unit is worth (steps or
    seconds of audio)."""
    import torch

    from distill.models.config import PriorConfig, VQVAEConfig
    from distill.models.magnitude import render
    from distill.models.prior import CodePrior
    from distill.models.rvqvae import ConvVQVAE, multiscale_mel_loss
    from distill.models.sampling import generate_codes
    from distill.training.settings import PriorSettings, TrainSettings

    torch.manual_seed(0)
    vq_config = VQVAEConfig.from_file_count(files)
    vqvae = ConvVQVAE(vq_config)
    mels = torch.randn(TrainSettings.batch_size, vq_config.mel.n_mels, vq_config.window_frames)
    with torch.no_grad():
        vqvae(mels)  # the codebooks' first-batch initialisation
    prior_config = PriorConfig.from_file_count(
        files, vq_config.rvq_levels, vq_config.codebook_size, vq_config.window_steps
    )
    if measure in ("vqvae", "decode"):
        if measure == "decode":  # the helper's loop: the editor decoding a sound
            vqvae.eval()
            codes = torch.randint(0, vq_config.codebook_size, (200, vq_config.rvq_levels))

            def decode() -> None:
                with torch.no_grad():
                    render(vqvae, vqvae.decode_sound(codes))

            return decode, 1.0
        optimizer = torch.optim.AdamW(vqvae.parameters(), lr=TrainSettings.learning_rate)
        audible = torch.ones(mels.shape[0], mels.shape[2])

        def vqvae_step() -> None:
            out = vqvae(mels)
            loss = multiscale_mel_loss(out.reconstruction, mels, audible)
            loss = loss + vq_config.commitment_weight * out.commit_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return vqvae_step, 1.0
    prior = CodePrior(prior_config)
    if measure == "prior":
        optimizer = torch.optim.AdamW(prior.parameters(), lr=PriorSettings.learning_rate)
        shape = (PriorSettings.batch_size, prior_config.context_steps, prior_config.rvq_levels)
        batch = torch.randint(0, prior_config.codebook_size, shape)

        def prior_step() -> None:
            loss = prior.loss(batch).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
            optimizer.step()

        return prior_step, 1.0
    vqvae.eval()
    seconds_per_step = vq_config.downsample * vq_config.mel.hop_length / vq_config.mel.sample_rate
    steps = math.ceil(GENERATE_SECONDS / seconds_per_step)

    def generate() -> None:  # one clip, as generate_clips makes it (less the files)
        codes = generate_codes(prior, steps, [torch.Generator().manual_seed(0)])
        with torch.no_grad():
            render(vqvae, vqvae.decode_indices(codes)[0])

    return generate, GENERATE_SECONDS


def child(args: argparse.Namespace) -> None:
    """Warm up, say "ready"; then for every "go" line, measure `--seconds` and answer the
    rate as JSON. A competitor (--forever) just runs after "ready" until it is killed."""
    apply_policy(args.policy, args.processes)
    step, worth = step_function(args.measure, args.files)
    step()  # warm-up: allocator, kernels
    print("ready", flush=True)
    if args.forever:
        while True:
            step()
    for line in sys.stdin:
        if line.strip() != "go":
            break
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < args.seconds or done < 1:
            step()
            done += 1
        rate = done * worth / (time.perf_counter() - started)
        print(json.dumps({"rate": rate}), flush=True)


# -- the parent: scenarios around each measure -----------------------------------------


def spawn(args: argparse.Namespace, measure: str, policy: str, processes: int,
          forever: bool = False) -> subprocess.Popen:  # fmt: skip
    command = [sys.executable, str(HERE), "--child", measure, "--policy", policy,
               "--processes", str(processes), "--files", str(args.files),
               "--seconds", str(args.seconds)] + (["--forever"] if forever else [])  # fmt: skip
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        raise RuntimeError(f"{measure} ({policy}) did not start: {line!r}")
    return process


def competitors(args: argparse.Namespace, scenario: str, policy: str) -> list[subprocess.Popen]:
    if scenario in ("1 spinner", "2 spinners"):
        count = 1 if scenario == "1 spinner" else 2
        return [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(count)]
    if scenario == "2nd training":  # another `distill train`: alone in its own eyes
        return [spawn(args, "vqvae", policy, processes=1, forever=True)]
    if scenario == "helper decoding":  # a server's helper, sharing with its worker
        return [spawn(args, "decode", policy, SERVER_PROCESSES, forever=True)]
    return []


def measure_all(args: argparse.Namespace, policy: str, measure: str) -> dict[str, float]:
    """The measure's rate in every scenario; the helper's with the server's share."""
    rates: dict[str, float] = {}
    groups = [(1, [s for s in SCENARIOS if s != "helper decoding"])]  # a CLI run: alone
    if measure != "generate":
        # a server's worker and its helper, with the shares distill gives them
        groups.append((SERVER_PROCESSES, ["quiet", "helper decoding"]))
    for group, (processes, scenarios) in enumerate(groups):
        measured = spawn(args, measure, policy, processes)
        assert measured.stdin is not None and measured.stdout is not None
        try:
            for scenario in scenarios:
                others = competitors(args, scenario, policy)
                try:
                    measured.stdin.write("go\n")
                    rate = json.loads(measured.stdout.readline())["rate"]
                finally:
                    for other in others:
                        other.kill()
                        other.wait()
                key = scenario if group == 0 else f"{scenario} (server share)"
                rates[key] = rate
                print(f"    {policy} {measure} {key}: {rate:.2f}", flush=True)  # as it goes
        finally:
            measured.stdin.close()
            measured.wait()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", choices=("both", "fit", "active"), default="both")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument(
        "--files", type=int, default=20, help="default model sizes for this many files"
    )
    parser.add_argument("--child", choices=(*MEASURES, "decode"), help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--forever", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.measure = args.child
        child(args)
        return
    # a `timeout` or Ctrl-C still stops every spinner and competitor (the finally blocks)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    policies = ("active", "fit") if args.policy == "both" else (args.policy,)
    started = time.perf_counter()
    print("each measurement as it is taken (rates; the table of ratios follows):", flush=True)
    results = {p: {m: measure_all(args, p, m) for m in MEASURES} for p in policies}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"contention: {cores} cores, default sizes for {args.files} files, {args.seconds:g} s a "
        f"measurement, ratio to the same measure quiet ({time.perf_counter() - started:.0f} s)"
    )
    units = {"vqvae": "steps/s", "prior": "steps/s", "generate": "x real time"}
    for measure in MEASURES:
        print(f"  {measure} ({units[measure]})")
        for policy in policies:
            rates = results[policy][measure]
            quiet, cells = rates["quiet"], []
            for key, rate in rates.items():
                if key == "quiet":
                    continue
                if key != "quiet (server share)":  # against the measure alone, quiet
                    cells.append(f"{key} {rate / quiet:.2f}x")
            line = f"    {policy:6s} quiet {quiet:6.2f}: " + ", ".join(cells)
            if "quiet (server share)" in rates:
                line += f"; server share quiet {rates['quiet (server share)']:.2f}"
            if policy == "fit" and "active" in results:
                line += f"; quiet fit/active {quiet / results['active'][measure]['quiet']:.2f}"
            print(line)
    one_other = ("1 spinner", "2nd training", "helper decoding (server share)")
    worst = {
        p: min(r[m][k] / r[m]["quiet"] for m in MEASURES for k in one_other if k in r[m])
        for p, r in results.items()
    }
    print("  worst ratio with one competing process: " + ", ".join(
        f"{p} {w:.2f}x" for p, w in worst.items()))  # fmt: skip


if __name__ == "__main__":
    main()
