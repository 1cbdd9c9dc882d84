"""The `distill` command as a user runs it: real subprocesses, a real data directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from commands import DISTILL, assert_lines_as_stored, command_env, distill, json_lines
from helpers import write_bad_sounds, write_good_sounds
from waiting import DEADLINE


def loads_torch(home: Path, *args: str) -> bool:
    """Whether `distill ARGS` imports torch. Listing the library and reading cards must
    not: torch and the model code take 2 to 3 s to import, the command itself 0.4 s."""
    code = "import sys\nfrom distill.cli.main import app\ntry:\n    app(sys.argv[1:])\n"
    code += "except SystemExit:\n    pass\nprint('torch loaded:', 'torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=command_env(home),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("torch loaded:"), result.stdout + result.stderr
    return last == "torch loaded: True"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "sounds"
    write_good_sounds(folder)
    write_bad_sounds(folder / "bad")
    return folder


def test_check_prints_the_preflight_and_trains_nothing(dataset: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = distill(home, "train", str(dataset), "--check")
    assert result.returncode == 0, result.stderr
    assert "usable files" in result.stdout and "6 (" in result.stdout
    assert "silence.wav: silent" in result.stdout
    assert "suggested codebook size" in result.stdout
    assert not (home / "models").exists() or not any((home / "models").iterdir())
    assert "no runs yet" in distill(home, "runs").stdout  # a check records no run


def test_train_then_show_the_model(dataset: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = distill(
        home, "train", str(dataset), "--epochs", "1", "--rvq-levels", "2",
        "--codebook-size", "16", "--stage-steps", "5", "--model-name", "kicks", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    assert events[-1]["kind"] == "run_completed"
    assert (home / "models" / "kicks.distill").is_file()

    card = json.loads(distill(home, "models", "show", "kicks", "--json").stdout)
    assert card["name"] == "kicks"
    assert card["config"]["rvq_levels"] == 2 and card["config"]["codebook_size"] == 16
    assert [h["level"] for h in card["health"]] == [1, 2]

    shown = distill(home, "models", "show", "kicks")
    assert shown.returncode == 0 and "codebook" in shown.stdout
    listed = json.loads(distill(home, "models", "--json").stdout)  # bare `models` lists
    assert [(m["name"], m["has_prior"]) for m in listed] == [("kicks", False)]
    assert "kicks" in distill(home, "models").stdout
    assert not loads_torch(home, "models") and not loads_torch(home, "models", "show", "kicks")
    assert not loads_torch(home, "runs")

    exported = distill(home, "models", "export", "kicks", str(home.parent))
    assert exported.returncode == 0 and (home.parent / "kicks.distill").is_file()
    assert distill(home, "models", "rm", "kicks").returncode == 0
    imported = distill(home, "models", "import", str(home.parent / "kicks.distill"))
    assert imported.returncode == 0, imported.stdout
    assert distill(home, "models", "rename", "kicks", "kicks-2").returncode == 0
    listed = json.loads(distill(home, "models", "list", "--json").stdout)
    assert [m["name"] for m in listed] == ["kicks-2"]
    runs = json.loads(distill(home, "runs", "--json").stdout)
    assert [r["model_name"] for r in runs] == ["kicks-2"]  # the record follows the rename
    assert runs[0]["val_mel_error"] > 0  # the headline figure sits on the run's row
    report = distill(home, "runs", "show", runs[0]["run_id"]).stdout
    assert "mel error" in report and "training files" in report and "held-out files" in report
    assert "mel error" in distill(home, "runs").stdout
    missing = distill(home, "models", "rm", "kicks")
    assert missing.returncode == 2 and "no model named 'kicks'" in missing.stdout

    again = distill(home, "train", str(dataset), "--model-name", "kicks-2")
    assert again.returncode == 2 and "already exists" in again.stdout


def test_json_lines_are_the_events_sqlite_holds(dataset: Path, tmp_path: Path) -> None:
    """A script reading `--json` can tell runs apart and follow on from a seq: every line
    carries the event's run_id, seq and ts beside kind and payload, as SQLite has them."""
    home = tmp_path / "home"
    trained = distill(home, "train", str(dataset), "--epochs", "1", "--stage-steps", "0",
                      "--json")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    live = json_lines(trained.stdout)
    stored = assert_lines_as_stored(live, home, gapless=False)  # live: steps may coalesce
    assert live[0]["seq"] == 1 and live[-1]["seq"] == stored[-1]["seq"]
    assert [line["kind"] for line in live][:: len(live) - 1] == ["run_queued", "run_completed"]
    assert live[0]["ts"] <= live[-1]["ts"]
    run_id = live[0]["run_id"]

    replayed = distill(home, "runs", "follow", run_id, "--json")  # from the store: every step
    assert replayed.returncode == 0, replayed.stderr
    assert_lines_as_stored(json_lines(replayed.stdout), home)
    assert len(json_lines(replayed.stdout)) == len(stored)
    middle = stored[len(stored) // 2]["seq"]
    rest = distill(home, "runs", "follow", run_id, "--after", str(middle), "--json")
    assert rest.returncode == 0, rest.stderr
    assert_lines_as_stored(json_lines(rest.stdout), home)
    assert [line["seq"] for line in json_lines(rest.stdout)] == list(
        range(middle + 1, len(stored) + 1)
    )
    # From past its last event there is nothing to show; the exit code is still the run's.
    past = distill(home, "runs", "follow", run_id, "--after", str(len(stored)), "--json")
    assert (past.returncode, past.stdout) == (0, ""), past.stderr

    checked = distill(home, "train", str(dataset), "--check", "--json")  # no run: no seq
    assert [sorted(line) for line in json_lines(checked.stdout)] == [["kind", "payload"]]


def test_the_human_report_has_health_and_the_model_path(dataset: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = distill(
        home,
        "train",
        str(dataset),
        "--epochs",
        "2",
        "--stage-steps",
        "10",
        "--model-name",
        "report",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "training complete" in out
    assert "decoder stage: 10 steps" in " ".join(out.split())
    assert "its sounds play through the decoder stage it trained" in out or (
        "its decoder stage stayed the mel's pseudo-inverse" in out
    )
    assert "utilization" in out and "perplexity" in out and "dead codes" in out
    assert str(home / "models" / "report.distill") in out.replace("\n", "")


def test_bad_input_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_bad_sounds(tmp_path / "bad")
    no_audio = distill(home, "train", str(tmp_path / "bad"), "--epochs", "1")
    assert no_audio.returncode == 2
    assert "no usable audio" in no_audio.stdout
    assert "Traceback" not in no_audio.stdout + no_audio.stderr

    (tmp_path / "foreign.distill").write_bytes(b"PK\x03\x04 not a model")
    refused = distill(home, "models", "show", str(tmp_path / "foreign.distill"))
    assert refused.returncode == 2
    assert "not a distill" in refused.stdout.lower()
    assert "Traceback" not in refused.stdout + refused.stderr


def test_ctrl_c_stops_cleanly_and_keeps_the_checkpoint(dataset: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    process = subprocess.Popen(
        [*DISTILL, "train", str(dataset), "--epochs", "500", "--no-keep-best", "--json"],
        env=command_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        for line in process.stdout:  # wait on the event, not on a clock
            if json.loads(line)["kind"] == "checkpoint_saved":
                break
        os.killpg(process.pid, signal.SIGINT)  # as a terminal does: the whole group
        rest, _ = process.communicate(timeout=DEADLINE)
    finally:
        process.kill()
    kinds = [e["kind"] for e in json_lines(rest)]
    assert kinds[-1] == "run_cancelled"
    assert process.returncode == 1
    cancelled = json_lines(rest)[-1]["payload"]
    assert Path(cancelled["checkpoint_path"]).is_file()


def test_skip_reasons_say_what_is_wrong_and_the_decoder_keeps_quiet(tmp_path: Path) -> None:
    """A zero-byte file is empty (not "Format not recognised"); a text file named .mp3 is
    not audio (not "File does not exist ... possibly a pipe?"); and mpg123's "Note:"
    lines about it stay off the terminal."""
    folder = tmp_path / "sounds"
    write_good_sounds(folder, count=2)
    (folder / "zero.wav").write_bytes(b"")
    (folder / "words.mp3").write_text("these are words, not a sound\n" * 20)
    result = distill(tmp_path / "home", "train", str(folder), "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "zero.wav: empty (a file of 0 bytes)" in out
    assert "words.mp3: unreadable: not audio that soundfile can read (no MP3 data)" in out
    assert "possibly a pipe" not in out and "Format not recognised" not in out
    assert "Note:" not in result.stderr and "MPEG" not in result.stderr, result.stderr
