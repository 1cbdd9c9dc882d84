"""The `distill` command as a user runs it: a subprocess on a data directory of its own."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from waiting import DEADLINE

from distill.events import STEP_KINDS
from distill.paths import database_path

DISTILL = [sys.executable, "-m", "distill.cli.main"]  # `distill`, from this checkout


def command_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a command on `home`; wide, so rich wraps no line a test reads."""
    return {**os.environ, "DISTILL_HOME": str(home), "COLUMNS": "200", **extra}


def distill(home: Path, *args: str) -> subprocess.CompletedProcess:
    """`distill ARGS` to its end (the deadline only guards against a hang)."""
    return subprocess.run(
        [*DISTILL, *args], env=command_env(home), capture_output=True, text=True, timeout=DEADLINE
    )


def json_lines(text: str) -> list[dict]:
    """The JSON objects a `--json` event stream printed, one a line."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def stored_lines(home: Path, run_id: str) -> list[dict]:
    """The run's events as SQLite holds them, in seq order, as a --json line has them."""
    with contextlib.closing(sqlite3.connect(database_path(home))) as db:
        rows = db.execute(
            "SELECT run_id, seq, kind, payload, ts FROM events WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
    return [
        {"run_id": r, "seq": seq, "kind": kind, "payload": json.loads(payload), "ts": ts}
        for r, seq, kind, payload, ts in rows
    ]


def assert_lines_as_stored(lines: list[dict], home: Path, gapless: bool = True) -> list[dict]:
    """Each --json line is one event of one run exactly as SQLite holds it (run_id, seq,
    kind, payload, ts), in seq order. A live follower may miss step events (the bus
    coalesces them for a slow reader): without `gapless`, only those may be missing.
    Returns what SQLite holds."""
    assert lines, "no JSON lines"
    assert {tuple(sorted(line)) for line in lines} == {("kind", "payload", "run_id", "seq", "ts")}
    run_ids = {line["run_id"] for line in lines}
    assert len(run_ids) == 1, run_ids
    stored = stored_lines(home, run_ids.pop())
    by_seq = {event["seq"]: event for event in stored}
    seqs = [line["seq"] for line in lines]
    assert seqs == sorted(set(seqs)), "seqs out of order or repeated"
    for line in lines:  # NaN != NaN: compare the JSON texts
        assert json.dumps(line, sort_keys=True) == json.dumps(by_seq[line["seq"]], sort_keys=True)
    missing = [by_seq[seq] for seq in range(seqs[0], seqs[-1] + 1) if seq not in seqs]
    if gapless:
        assert missing == [], "gaps in the seqs"
    assert all(event["kind"] in STEP_KINDS for event in missing), missing
    return stored
