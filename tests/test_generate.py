"""generate_clips on a tiny model with a prior: WAVs, seeds, length, copy check, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import tiny_prior_spec, tiny_spec, write_good_sounds

from distill.audio.dataset import PEAK_TARGET
from distill.audio.synth import tone
from distill.events import ClipGenerated, payload_from_dict
from distill.inference.generate import (
    MANIFEST_NAME,
    GenerateSpec,
    generate_clips,
    variation_grid,
)
from distill.inference.one_shot import (
    ONSET_PREROLL,
    SILENT_RMS,
    is_silent,
    normalise_peak,
    sound_span,
    trim_decayed,
    trim_leading,
)
from distill.models.card import ModelCard
from distill.models.library import load_with_prior, read_card, read_metadata
from distill.models.model_file import ModelFileError
from distill.models.sampling import generate_codes
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
    training_files = read_card(model_with_prior).prior.training_files
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
    sounds = Path(read_card(model_with_prior).prior.dataset.path)
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
        spec = GenerateSpec(
            model_with_prior, tmp_path / folder, seconds=0.4, count=count, seed=seed, **sampling
        )
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


def test_one_shot_clips_are_one_sound_that_ends_when_it_has_decayed(
    model_with_prior: Path, tmp_path: Path
) -> None:
    spec = GenerateSpec(model_with_prior, tmp_path, seconds=1.0, count=4, one_shot=True)
    result = generate_clips(spec)
    continuous = generate_clips(
        GenerateSpec(model_with_prior, tmp_path / "c", seconds=1.0, count=4, one_shot=False)
    )
    for clip, whole in zip(result.clips, continuous.clips, strict=True):
        audio, rate = sf.read(clip.path)
        assert clip.one_shot and not whole.one_shot
        assert 0 < len(audio) <= 8000 and clip.seconds == pytest.approx(len(audio) / rate)
        assert clip.tries >= 1 and clip.silent == (clip.rms < SILENT_RMS)
        if not clip.silent:  # the tail is gone: the last 5 ms fade under the peak
            assert abs(audio[-1]) < 0.1 * abs(audio).max()
            assert abs(audio[: max(1, len(audio) // 4)]).max() > 0  # starts on the sound
        assert len(sf.read(whole.path)[0]) == 8000


def test_the_default_mode_follows_the_prior_training_files(model_with_prior: Path) -> None:
    prior = read_card(model_with_prior).prior
    assert prior is not None and prior.dataset.one_shot is False  # 0.4-0.8 s files, 0.26 s window
    metadata = read_metadata(model_with_prior)
    del metadata["prior"]["dataset"]["one_shot"]  # a model file from before it was recorded
    older = ModelCard.from_dict(metadata).prior
    assert older is not None and older.dataset.one_shot is False


def test_the_sound_ends_where_the_prior_emits_silence_codes() -> None:
    silence = np.array([0])  # key 0: codes (0, 0)
    codes = np.array([[0, 0], [3, 1], [2, 2], [0, 0], [4, 1], [0, 0], [0, 0], [5, 5]])
    assert sound_span(codes, silence, 8) == (1, 5)  # one silent step does not end it
    assert sound_span(np.zeros((4, 2), dtype=int), silence, 8) == (0, 0)
    assert sound_span(codes[1:5], silence, 8) == (0, 4)  # never silent: runs to the end


def test_a_decayed_tail_is_trimmed_and_silence_is_silence() -> None:
    rate = 8000
    hit = np.concatenate([tone(440, 0.2, rate, decay=30.0), np.zeros(rate, dtype=np.float32)])
    trimmed = trim_decayed(hit, rate)
    assert len(trimmed) < 0.25 * rate and trimmed[-1] == 0.0
    assert is_silent(np.full(rate, 2e-5, dtype=np.float32)) and not is_silent(trimmed)


def test_a_one_shot_starts_on_its_sound() -> None:
    rate = 8000
    quiet = np.full(400, 1e-3, dtype=np.float32)  # 50 ms at -60 dB under a 0.6 peak
    hit = np.concatenate([quiet, tone(440, 0.2, rate, decay=30.0)])
    trimmed = trim_leading(hit, rate)
    assert len(hit) - len(trimmed) >= 400 - round(ONSET_PREROLL * rate)
    assert np.abs(trimmed[: round(2 * ONSET_PREROLL * rate)]).max() > 0.01
    assert len(trim_leading(np.zeros(10, dtype=np.float32), rate)) == 10


def test_a_one_shot_plays_at_the_level_of_its_training_sounds() -> None:
    quiet = 0.05 * tone(440, 0.2, 8000)
    assert np.abs(normalise_peak(quiet)).max() == pytest.approx(PEAK_TARGET, rel=1e-5)
    silence = np.full(800, 1e-5, dtype=np.float32)
    assert np.array_equal(normalise_peak(silence), silence)


def test_a_variation_keeps_its_training_sounds_first_level_and_redraws_the_rest(
    model_with_prior: Path, tmp_path: Path
) -> None:
    loaded = load_with_prior(model_with_prior)
    count, steps = 3, 40
    forced, sources = variation_grid(loaded, seed=1, count=count, steps=steps)
    names = list(loaded.prior_card.training_files)
    generators = [torch.Generator().manual_seed(1 + i) for i in range(count)]
    codes = generate_codes(loaded.prior, steps, generators, forced=forced)
    drawn_anew = 0
    for i in range(count):
        index = (1 + i) % len(loaded.training_codes)
        source = loaded.training_codes[index][:steps]
        assert sources[i] == names[index]
        assert torch.equal(codes[i, : len(source), 0], source[:, 0])  # its shape, kept
        drawn_anew += int((codes[i, : len(source), 1:] != source[:, 1:]).sum())
        assert torch.equal(codes[i, len(source) :], forced[i, len(source) :])  # then silence
    assert drawn_anew > 0
    clip = generate_clips(
        GenerateSpec(model_with_prior, tmp_path, seconds=0.5, seed=1, variation=True)
    ).clips[0]
    assert clip.variation_of == names[1 % len(names)]
