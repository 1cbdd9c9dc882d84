"""`distill train-prior` and `distill generate` as a user runs them: real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import soundfile as sf
from commands import DISTILL, command_env, distill, json_lines
from helpers import TINY_MEL
from waiting import DEADLINE

from distill.events import STOP_KEPT
from distill.paths import models_dir


def library_of(home: Path, model: Path, name: str) -> None:
    """`home`'s library holding a copy of `model` as NAME: the session's kit, trained once
    (conftest.py), rather than a `distill train` of its own in every test."""
    models_dir(home).mkdir(parents=True, exist_ok=True)
    shutil.copy(model, models_dir(home) / f"{name}.distill")


def test_train_a_prior_then_generate(tmp_path: Path, kit: dict) -> None:
    home = tmp_path / "home"
    library_of(home, kit["model_without_prior"], "kicks")

    early = distill(home, "generate", "kicks")
    assert early.returncode == 2 and "has no prior yet" in early.stdout
    assert "Traceback" not in early.stdout + early.stderr

    # A prior its model file could not hold is refused before it trains.
    huge = distill(
        home, "train-prior", "kicks", "--hidden-size", "2048", "--layers", "24", "--heads", "8"
    )
    assert huge.returncode != 0 and "a model file may hold" in huge.stdout.replace("\n", " ")
    assert "Traceback" not in huge.stdout + huge.stderr

    prior = distill(
        home, "train-prior", "kicks", "--epochs", "2", "--hidden-size", "16", "--layers", "1",
        "--heads", "2", "--lr", "0.001", "--generation-clips", "3",
    )  # fmt: skip
    assert prior.returncode == 0, prior.stderr
    out = prior.stdout
    assert "prior training complete" in out and "val perplexity" in out
    # what its sounds measured, in words: the summary and the card say the same
    assert "3 clips generated from the kept prior" in out
    shown = distill(home, "models", "show", "kicks").stdout
    for word in ("plausible", "varied", "new", "like yours"):
        assert word in out and word in shown
    assert "best so far" in out and "memorization warning" in out  # the data table's line
    assert "distill generate kicks" in out

    listed = json.loads(distill(home, "models", "list", "--json").stdout)
    assert listed[0]["has_prior"] is True and listed[0]["prior_best_val_perplexity"] > 1

    made = distill(
        home, "generate", "kicks", "--seconds", "2", "--count", "2", "--seed", "5",
        "--top-k", "8", "--continuous", "--out", str(tmp_path / "out"), "--json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout)
    assert [c["seed"] for c in report["clips"]] == [5, 6]
    for clip in report["clips"]:
        audio, rate = sf.read(clip["path"])
        assert rate == TINY_MEL.sample_rate and len(audio) == 2 * TINY_MEL.sample_rate
        assert Path(clip["path"]).parent == tmp_path / "out"
        assert "longest_run_steps" in clip["copy_check"]

    # The human report (which mode a model defaults to: test_generate.py)
    human = distill(home, "generate", "kicks", "--seconds", "1")
    assert human.returncode == 0, human.stderr
    assert "continuous clip(s)" in human.stdout or "one-shot clip(s)" in human.stdout
    assert "nearest training clip" in human.stdout
    assert str(home / "generated" / "kicks") in human.stdout.replace("\n", "")


def test_bad_input_to_the_prior_commands_is_a_message(tmp_path: Path) -> None:
    home = tmp_path / "home"
    missing = distill(home, "train-prior", "nope")
    assert missing.returncode == 2 and "no model named 'nope'" in missing.stdout
    heads = distill(home, "train-prior", "nope", "--hidden-size", "30", "--heads", "4")
    assert heads.returncode == 2 and "must divide" in heads.stdout
    (tmp_path / "x.distill").write_bytes(b"garbage")
    foreign = distill(home, "generate", str(tmp_path / "x.distill"))
    assert foreign.returncode == 2 and "not a distill model file" in foreign.stdout
    for result in (missing, heads, foreign):
        assert "Traceback" not in result.stdout + result.stderr
    assert json_lines(missing.stdout) == []


def test_ctrl_c_on_a_prior_keeps_its_best_epoch(tmp_path: Path, kit: dict) -> None:
    """The first Ctrl-C of `distill train-prior` stops the run and saves the best epoch so
    far into the model, as a finished run would: the run ends completed, exit code 0."""
    home = tmp_path / "home"
    library_of(home, kit["model_without_prior"], "hits")
    process = subprocess.Popen(
        [*DISTILL, "train-prior", "hits", "--epochs", "500", "--patience", "0",
         "--hidden-size", "16", "--layers", "1", "--heads", "2", "--json"],
        env=command_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        epochs = 0
        for line in process.stdout:  # wait on the events, not on a clock
            epochs += json.loads(line)["kind"] == "prior_epoch_metrics"
            if epochs == 2:
                break
        os.killpg(process.pid, signal.SIGINT)  # as a terminal does: the whole group
        rest, _ = process.communicate(timeout=DEADLINE)
    finally:
        process.kill()
    events = json_lines(rest)
    assert [e["kind"] for e in events][-2:] == ["prior_saved", "run_completed"]
    done = events[-1]["payload"]
    assert done["stopped_early"] == STOP_KEPT and done["epochs_run"] >= 2
    assert process.returncode == 0
    listed = json.loads(distill(home, "models", "list", "--json").stdout)
    assert listed[0]["has_prior"] is True

    shown = distill(home, "runs", "show", events[-1]["run_id"])
    assert "stopped on request" in shown.stdout.replace("\n", " ")
