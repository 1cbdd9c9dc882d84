"""The pytest fixtures every test module may ask for; the plain helpers they build on are
in helpers.py (imported by name, never `from conftest import`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import tiny_prior_spec, tiny_spec, write_good_sounds


@pytest.fixture
def sounds(tmp_path: Path) -> Path:
    folder = tmp_path / "sounds"
    write_good_sounds(folder)
    return folder


@pytest.fixture(scope="session")
def kit(tmp_path_factory) -> dict:
    """`kit`, a tiny model with a prior, trained once per session on six tiny sounds: the
    sounds' folder and its parent (`base`, an allowed root to give a server), the model's
    file (copy it into a library; never change it) and the code grid of one sound."""
    from distill.inference.codes import encode_file
    from distill.models.library import load_vqvae
    from distill.training.prior import train_prior
    from distill.training.vqvae import train_vqvae

    base = tmp_path_factory.mktemp("kit")
    sounds = base / "sounds"
    write_good_sounds(sounds)
    spec = tiny_spec(sounds, base / "train", epochs=1, name="kit")
    train_vqvae(spec, lambda event: None)
    without_prior = shutil.copy(spec.model_path, base / "kit-without-prior.distill")
    train_prior(tiny_prior_spec(spec.model_path, sounds, base / "prior"), lambda e: None)
    vqvae, _ = load_vqvae(spec.model_path)
    grid = encode_file(vqvae, "kit", sorted(sounds.iterdir())[0]).to_json()
    return {
        "base": base,
        "sounds": sounds,
        "model": spec.model_path,
        "model_without_prior": Path(without_prior),
        "grid": grid,
    }


@pytest.fixture(scope="module")
def library_server(kit: dict, tmp_path_factory) -> dict:
    """A real server whose library holds a copy of `kit` (see the kit fixture), its sounds
    in an allowed root."""
    import shutil

    from distill.paths import models_dir
    from distill.server.serve import ServerThread
    from distill.server.settings import ServerSettings

    home = tmp_path_factory.mktemp("library") / "home"
    shutil.copy(kit["model"], models_dir(home) / "kit.distill")
    settings = ServerSettings.for_host(home, "127.0.0.1", 0, allowed_roots=(kit["base"],))
    with ServerThread(settings) as server:
        yield {"server": server, "home": home, **kit}


def pytest_configure(config: pytest.Config) -> None:
    """Torch on one thread in the test process. Its models are tiny, so a second thread
    gains nothing, and two threads that spin while they wait collapse beside the suite's
    own servers, workers and browser (one batch test took 180 s at load 8 on two threads,
    2 s on one). Processes the tests start (workers, helpers) still set their threads
    themselves, as they do for a user (distill/threads.py)."""
    import torch

    torch.set_num_threads(1)
