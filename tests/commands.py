"""The `distill` command as a user runs it: a subprocess on a data directory of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from waiting import DEADLINE

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
