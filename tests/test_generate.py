"""generate_clips on a tiny model with a prior: WAVs, seeds, length, copy check, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
from conftest import tiny_prior_spec, tiny_spec, write_good_sounds

from distill.core.events import ClipGenerated, payload_from_dict
from distill.models.library import read_card
from distill.models.model_file import ModelFileError
from distill.training.generate import MANIFEST_NAME, GenerateSpec, generate_clips
from distill.training.prior import train_prior
from distill.training.vqvae import train_vqvae


@pytest.fixture(scope="module")
def model_with_prior(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("generate")
    write_good_sounds(tmp_path / "sounds")
    spec = tiny_spec(tmp_path / "sounds", tmp_path, epochs=1)
    train_vqvae(spec, lambda event: None)
    train_prior(tiny_prior_spec(spec.model_path, tmp_path / "sounds", tmp_path), lambda e: None)
    return spec.model_path


def test_clips_are_written_with_a_copy_check_and_a_manifest(
    model_with_prior: Path, tmp_path: Path
) -> None:
    events: list = []
    spec = GenerateSpec(model_with_prior, tmp_path / "out", seconds=0.5, count=2, seed=3)
    result = generate_clips(spec, events.append)
    assert events == result.clips and all(isinstance(e, ClipGenerated) for e in events)
    assert payload_from_dict("clip_generated", events[0].to_dict()) == events[0]
    assert [c.seed for c in result.clips] == [3, 4]
    training_files = read_card(model_with_prior)["prior"]["training_files"]
    for clip in result.clips:
        audio, rate = sf.read(clip.path)
        assert rate == 8000 and len(audio) == 4000
        assert abs(audio).max() > 0
        check = clip.copy_check
        assert 0 <= check.longest_run_share <= 1
        assert check.longest_run_seconds == pytest.approx(check.longest_run_steps * 0.032)
        assert check.nearest_file in training_files
        match, match_rate = sf.read(clip.match_path)  # the training stretch to hear beside it
        assert match_rate == 8000 and 0 < len(match) <= 4000
        assert Path(clip.match_path).parent == Path(clip.path).parent
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert manifest["spec"]["seed"] == 3 and len(manifest["clips"]) == 2
    assert manifest["clips"][1]["copy_check"] == result.clips[1].copy_check.__dict__
    assert result.realtime_factor > 0


def test_a_dataset_gone_leaves_the_check_without_a_match(
    model_with_prior: Path, tmp_path: Path
) -> None:
    sounds = Path(read_card(model_with_prior)["prior"]["dataset"]["path"])
    moved = sounds.rename(sounds.with_name("moved"))
    try:
        clip = generate_clips(GenerateSpec(model_with_prior, tmp_path, seconds=0.3)).clips[0]
    finally:
        moved.rename(sounds)
    assert clip.copy_check.nearest_file and clip.match_path == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [MANIFEST_NAME, Path(clip.path).name]
    )


def test_same_seed_same_sound_and_clip_i_is_seed_plus_i(
    model_with_prior: Path, tmp_path: Path
) -> None:
    def make(folder: str, seed: int, count: int, **sampling) -> list[bytes]:
        spec = GenerateSpec(model_with_prior, tmp_path / folder, 0.4, count, seed=seed, **sampling)
        return [Path(c.path).read_bytes() for c in generate_clips(spec).clips]

    first = make("a", seed=7, count=2)
    assert make("b", seed=7, count=2) == first
    assert make("c", seed=8, count=1) == first[1:]
    assert first[0] != first[1]
    assert make("d", seed=7, count=1, top_k=2, top_p=0.9) != first[:1]


def test_clips_longer_than_one_training_window(model_with_prior: Path, tmp_path: Path) -> None:
    window_seconds = 32 * 64 / 8000  # 0.256 s
    spec = GenerateSpec(model_with_prior, tmp_path, seconds=5 * window_seconds + 0.01)
    clip = generate_clips(spec).clips[0]
    audio, _ = sf.read(clip.path)
    assert len(audio) == round(spec.seconds * 8000)
    assert clip.seconds == spec.seconds


def test_a_model_without_a_prior_is_refused_by_name(tmp_path: Path) -> None:
    write_good_sounds(tmp_path / "sounds")
    spec = tiny_spec(tmp_path / "sounds", tmp_path, epochs=1, name="bare")
    train_vqvae(spec, lambda event: None)
    with pytest.raises(ModelFileError, match="bare.distill has no prior yet.*train-prior bare"):
        generate_clips(GenerateSpec(spec.model_path, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_bad_requests_are_refused_before_any_work(tmp_path: Path) -> None:
    for bad in ({"seconds": 0}, {"count": 0}, {"temperature": -1.0}, {"top_p": 2.0}):
        with pytest.raises(ValueError):
            GenerateSpec(tmp_path / "m.distill", tmp_path, **bad)
