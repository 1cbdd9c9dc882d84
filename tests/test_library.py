"""The model library's file operations: import, export, rename, delete."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import TINY_MODEL, model_card

from distill.models.config import VQVAEConfig
from distill.models.library import (
    delete_model,
    export_model,
    import_model,
    list_models,
    load_vqvae,
    read_metadata,
    rename_model,
    save_vqvae,
)
from distill.models.model_file import ModelFileError
from distill.models.rvqvae import ConvVQVAE
from distill.paths import generated_dir, model_path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = ConvVQVAE(VQVAEConfig(**TINY_MODEL))
    save_vqvae(model_path("kicks", tmp_path), model, model_card("kicks"))
    return tmp_path


def outputs(path: Path) -> torch.Tensor:
    model, _ = load_vqvae(path)
    n_mels = model.config.mel.n_mels
    mels = torch.linspace(-1, 1, n_mels * TINY_MODEL["window_frames"]).reshape(1, n_mels, -1)
    with torch.no_grad():
        return model(mels).reconstruction


def test_export_then_import_round_trips(home: Path, tmp_path: Path) -> None:
    exported = export_model("kicks", tmp_path / "out.distill", home)
    assert exported.read_bytes() == model_path("kicks", home).read_bytes()

    imported = import_model(exported, "snares", home)
    assert imported == model_path("snares", home)
    assert read_metadata(imported)["name"] == "snares"
    assert torch.equal(outputs(imported), outputs(model_path("kicks", home)))
    assert [p.stem for p in list_models(home)] == ["kicks", "snares"]


def test_export_into_a_folder_keeps_the_name(home: Path, tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    assert export_model("kicks", tmp_path / "shared", home) == tmp_path / "shared/kicks.distill"
    assert [p.name for p in (tmp_path / "shared").iterdir()] == ["kicks.distill"]


def test_rename_moves_the_file_and_the_card_name(home: Path) -> None:
    before = outputs(model_path("kicks", home))
    renamed = rename_model("kicks", "bass", home)
    assert [p.stem for p in list_models(home)] == ["bass"]
    assert read_metadata(renamed)["name"] == "bass"
    assert torch.equal(outputs(renamed), before)


def test_delete(home: Path) -> None:
    assert delete_model("kicks", home).sounds is None  # it generated nothing
    assert list_models(home) == []
    with pytest.raises(ModelFileError, match="no model named 'kicks'"):
        delete_model("kicks", home)


def test_a_deleted_models_sounds_are_kept_but_not_inherited(home: Path) -> None:
    """A new model under a deleted one's name, or renamed to it, starts with no history."""
    (generated_dir(home) / "kicks" / "20261123-1").mkdir(parents=True)
    (generated_dir(home) / "kicks" / "20261123-1" / "clip01_seed0.wav").write_bytes(b"RIFF")
    deleted = delete_model("kicks", home)
    assert deleted.sounds is not None and (deleted.sounds / "20261123-1/clip01_seed0.wav").is_file()
    assert deleted.sounds.parent == generated_dir(home) / "_deleted"
    assert not (generated_dir(home) / "kicks").exists()

    model = ConvVQVAE(VQVAEConfig(**TINY_MODEL))
    save_vqvae(model_path("snares", home), model, model_card("snares", "now"))
    (generated_dir(home) / "kicks" / "old").mkdir(parents=True)  # left by hand, say
    (generated_dir(home) / "snares" / "mine").mkdir(parents=True)
    rename_model("snares", "kicks", home)
    assert [p.name for p in (generated_dir(home) / "kicks").iterdir()] == ["mine"]
    assert len(list((generated_dir(home) / "_deleted").iterdir())) == 2  # nothing lost


def test_a_bad_file_never_lands_in_the_library(home: Path, tmp_path: Path) -> None:
    good = model_path("kicks", home).read_bytes()
    (tmp_path / "cut.distill").write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelFileError, match="truncated|too short|shorter"):
        import_model(tmp_path / "cut.distill", "cut", home)
    (tmp_path / "foreign.distill").write_bytes(b"RIFF....WAVEfmt ")
    with pytest.raises(ModelFileError):
        import_model(tmp_path / "foreign.distill", None, home)
    assert [p.stem for p in list_models(home)] == ["kicks"]
    assert [p.name for p in (home / "models").iterdir()] == ["kicks.distill"]  # no temp files


@pytest.mark.parametrize("name", ["../escape", "/abs", "a/b", "", ".hidden", "x.distill"])
def test_names_cannot_leave_the_library(home: Path, tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelFileError, match="bad model name"):
        rename_model("kicks", name, home)
    with pytest.raises(ModelFileError):
        delete_model(name, home)
    assert [p.stem for p in list_models(home)] == ["kicks"]


def test_taken_names_are_refused(home: Path, tmp_path: Path) -> None:
    exported = export_model("kicks", tmp_path, home)
    with pytest.raises(ModelFileError, match="already in the library"):
        import_model(exported, None, home)
    with pytest.raises(ModelFileError, match="already in the library"):
        rename_model("kicks", "kicks", home)
