"""Hostile model files through the CLI and the dashboard (issue 14): refused with the field
named and no traceback, listed as unreadable without hiding the others, imported in a
stream and within the size cap, in messages that name what the user gave."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from card_fuzz import base_model
from helpers import page_client
from waiting import DEADLINE

from distill.models.library import read_metadata
from distill.models.model_file import MAX_MODEL_FILE_BYTES, load_model_file, save_model_file
from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings

# Run the CLI in-process and report its peak memory after it exits (Linux: KiB).
PEAK_RSS = (
    "import resource, sys\nfrom distill.cli.main import app\ntry:\n    app(sys.argv[1:])\n"
    "except SystemExit as exit:\n    code = exit.code\n"
    "print('peak KiB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(code)"
)


def distill(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`distill ARGS`, run from `cwd` (PYTHONPATH made absolute, so it still finds this
    checkout from there)."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    python_path = os.pathsep.join(os.path.abspath(p) for p in paths if p)
    return subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *args],
        env={**os.environ, "DISTILL_HOME": str(home), "COLUMNS": "250", "PYTHONPATH": python_path},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        cwd=cwd,
    )


def peak_kib(result: subprocess.CompletedProcess) -> int:
    return int(result.stdout.rsplit("peak KiB", 1)[1])


def clean(result: subprocess.CompletedProcess) -> bool:
    return "Traceback" not in result.stdout + result.stderr


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[dict, dict[str, torch.Tensor]]:
    return load_model_file(base_model(tmp_path_factory.mktemp("hostile")))


def write(base, path: Path, **config) -> Path:
    """The base model with these config values (config=3 replaces the whole config)."""
    metadata, tensors = copy.deepcopy(base[0]), base[1]
    if "config" in config:
        metadata["config"] = config.pop("config")
    for name, value in config.items():
        section = (
            metadata["config"]["mel"] if name in metadata["config"]["mel"] else metadata["config"]
        )
        section[name] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_model_file(path, tensors, metadata)


def test_show_and_import_refuse_a_bad_card_naming_the_field(base, tmp_path: Path) -> None:
    home = tmp_path / "home"
    cases = [
        ({"config": 3}, "config: must be an object"),
        ({"n_fft": math.inf}, "config.mel.n_fft: must be a finite integer"),
        ({"hidden_channels": 4096}, "config: implies"),
        ({"ema_decay": "[/]"}, "config.ema_decay: must be a finite number"),  # not rich markup
    ]
    for config, reason in cases:
        write(base, tmp_path / "bad.distill", **config)
        for command in ("show", "import"):
            result = distill(home, "models", command, "bad.distill", cwd=tmp_path)
            assert result.returncode == 2 and clean(result), result.stdout + result.stderr
            assert f"bad.distill: {reason}" in result.stdout.replace("\n", ""), result.stdout
    assert not (home / "models").exists() or not list((home / "models").iterdir())


def test_one_bad_file_never_breaks_the_listing(base, tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(base, home / "models" / "good.distill")
    write(base, home / "models" / "bad.distill", config=3)
    write(base, home / "models" / "odd.distill", sample_rate=10**9)
    listed = distill(home, "models", "list", "--json")
    assert listed.returncode == 0 and clean(listed), listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout.rsplit("peak KiB", 1)[0])}
    assert rows["good"]["rvq_levels"] == 2 and "unreadable" not in rows["good"]
    assert "config: must be an object" in rows["bad"]["unreadable"]
    assert "config.mel.sample_rate: must be" in rows["odd"]["unreadable"]
    table = distill(home, "models")
    assert table.returncode == 0 and clean(table), table.stderr
    assert "unreadable" in table.stdout and "good" in table.stdout
    shown = distill(home, "models", "show", "good")
    assert shown.returncode == 0 and clean(shown) and "2 RVQ levels" in shown.stdout, shown.stderr


def test_import_refuses_a_file_over_the_cap(tmp_path: Path) -> None:
    huge = tmp_path / "huge.distill"
    with open(huge, "wb") as f:  # sparse: nothing of it is written to disk or read
        f.truncate(MAX_MODEL_FILE_BYTES + 1)
    result = distill(tmp_path / "home", "models", "import", str(huge))
    assert result.returncode == 2 and clean(result)
    assert "the library imports model files of up to 512 MiB" in result.stdout.replace("\n", " ")


def test_import_streams_the_file_instead_of_holding_it(base, tmp_path: Path) -> None:
    """A file with 128 MiB of training codes imports in about the memory of a small one
    (before: read whole, twice, and copied into tensors)."""
    metadata, tensors = copy.deepcopy(base[0]), dict(base[1])
    rows = 32 * 1024**2
    tensors["prior_codes.steps"] = torch.zeros(rows, 2, dtype=torch.int16)  # 128 MiB
    tensors["prior_codes.file_steps"] = torch.tensor([rows])
    metadata["prior"]["training_files"] = ["long.wav"]
    big = save_model_file(tmp_path / "big.distill", tensors, metadata)
    del tensors
    small = write(base, tmp_path / "small.distill")
    home = tmp_path / "home"
    baseline = distill(home, "models", "import", str(small))
    imported = distill(home, "models", "import", str(big))
    assert baseline.returncode == 0 and imported.returncode == 0, imported.stdout
    grown_mib = (peak_kib(imported) - peak_kib(baseline)) / 1024
    print(f"importing 128 MiB more grew the process by {grown_mib:.0f} MiB")
    assert grown_mib < 32, f"importing 128 MiB more grew the process by {grown_mib:.0f} MiB"
    card = read_metadata(home / "models" / "big.distill")  # the whole file checked once more
    assert card["name"] == "big" and card["prior"]["training_files"] == ["long.wav"]


@pytest.fixture(scope="module")
def server(base, tmp_path_factory):
    home = tmp_path_factory.mktemp("hostile-server") / "home"
    write(base, home / "models" / "good.distill")
    write(base, home / "models" / "bad.distill", config=3)
    settings = ServerSettings.for_host(home, "127.0.0.1", 0, max_model_upload_bytes=5_000_000)
    with ServerThread(settings) as live:
        yield live


def test_the_library_page_lists_a_bad_file_as_unreadable(server) -> None:
    with page_client(server) as http:
        library = http.get("/models")
        assert library.status_code == 200
        assert 'id="model-good"' in library.text and 'id="model-bad"' in library.text
        assert "unreadable: bad.distill: config: must be an object" in library.text
        page = http.get("/models/bad")
        assert page.status_code == 200 and "unreadable: bad.distill: config" in page.text
        assert http.get("/models/good").status_code == 200


def test_the_dashboard_refuses_a_bad_upload_naming_it(base, server, tmp_path: Path) -> None:
    cases = [({"config": 3}, "config: must be an object"),
             ({"n_fft": math.inf}, "config.mel.n_fft: must be a finite integer"),
             ({"hidden_channels": 4096}, "config: implies")]  # fmt: skip
    with page_client(server) as http:
        for config, reason in cases:
            data = write(base, tmp_path / "upload.distill", **config).read_bytes()
            files = {"file": ("mine.distill", data, "application/octet-stream")}
            response = http.post("/models/import", files=files)
            assert response.status_code == 400, response.text
            assert f"mine.distill not imported: {reason}" in response.text
            assert ".tmp" not in response.text and ".import-" not in response.text
        names = sorted(p.name for p in (server.settings.home / "models").iterdir())
    assert names == ["bad.distill", "good.distill"]
