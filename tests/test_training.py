"""train_vqvae end to end on a tiny model: events, previews, checkpoints, resume, cancel."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import soundfile as sf
import torch
from helpers import tiny_spec, write_bad_sounds, write_good_sounds

from distill.audio.dataset import DatasetError
from distill.audio.synth import click
from distill.audio.windows import fixed_crops
from distill.events import (
    CheckpointSaved,
    DatasetScanned,
    EpochMetrics,
    ModelSaved,
    PreviewReady,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
    StepMetrics,
)
from distill.models.library import load_vqvae, read_metadata
from distill.training.checkpoint import load_checkpoint
from distill.training.vqvae import MAX_VAL_WINDOWS_PER_FILE, evaluate, prepare_data, train_vqvae


def kinds(events) -> list[str]:
    return [e.kind for e in events]


def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 2-epoch run shared by the read-only tests below."""
    tmp_path = tmp_path_factory.mktemp("trained")
    write_good_sounds(tmp_path / "sounds")
    write_bad_sounds(tmp_path / "sounds" / "bad")
    spec = tiny_spec(tmp_path / "sounds", tmp_path, epochs=2)
    events: list = []
    result = train_vqvae(spec, events.append)
    return spec, events, result


def test_events_arrive_in_the_documented_order(trained) -> None:
    spec, events, result = trained
    assert result.status == "completed"
    order = [k for k in kinds(events) if k != "step_metrics"]
    assert order[:2] == ["dataset_scanned", "run_started"]
    assert order[-2:] == ["model_saved", "run_completed"]
    assert order.count("epoch_metrics") == 2
    assert order.count("checkpoint_saved") == 2
    started = of(events, RunStarted)[0]
    steps = of(events, StepMetrics)
    assert len(steps) == 2 * started.steps_per_epoch
    assert [(s.epoch, s.step) for s in steps[:2]] == [(0, 0), (0, 1)]


def test_preflight_names_the_skipped_files(trained) -> None:
    _, events, _ = trained
    scan = of(events, DatasetScanned)[0]
    assert len(scan.files_used) == 6
    assert {Path(s.path).name for s in scan.files_skipped} >= {"silence.wav", "truncated.flac"}
    assert scan.latent_vectors > 0 and scan.codebook_size == 8


def test_epoch_metrics_carry_health_for_every_level(trained) -> None:
    _, events, _ = trained
    for metrics in of(events, EpochMetrics):
        assert [h.level for h in metrics.val_levels] == [1, 2]
        for health in metrics.val_levels:
            assert 0 < health.utilization <= 1
            assert 1 <= health.perplexity <= 8
            assert health.dead_codes == round(8 * (1 - health.utilization))
        assert metrics.val_commit_loss > 0, "validation must report the commitment loss too"
        assert [h.level for h in metrics.train_levels] == [1, 2]
        assert metrics.val_loss == pytest.approx(
            metrics.val_recon_loss + 0.25 * metrics.val_commit_loss
        )


def test_health_counts_every_audible_vector_of_each_split_and_no_padding(trained) -> None:
    spec, events, _ = trained
    data = prepare_data(spec)
    down = data.config.downsample
    audible = {
        name: sum(math.ceil(s.frames / down) for s in files)
        for name, files in (("train", data.train_files), ("val", data.val_files))
    }
    for metrics in of(events, EpochMetrics):
        assert {h.vectors for h in metrics.train_levels} == {audible["train"]}
        assert {h.vectors for h in metrics.val_levels} == {audible["val"]}


def test_previews_hold_original_ceiling_and_each_level(trained) -> None:
    spec, events, _ = trained
    previews = of(events, PreviewReady)
    # each epoch's, then the saved model's (its best epoch) through its decoder stage
    assert [p.epoch for p in previews] == [0, 1, of(events, RunCompleted)[0].best_epoch]
    assert all(c.griffin_lim_wav == "" for p in previews[:-1] for c in p.clips)
    clip = previews[-1].clips[0]
    assert clip.griffin_lim_wav.startswith("previews/model/")
    assert clip.reconstruction_wav.startswith("previews/model/")
    files = [clip.original_wav, clip.ceiling_wav, clip.reconstruction_wav, *clip.level_wavs]
    files += [clip.griffin_lim_wav]
    files += [clip.original_png, clip.reconstruction_png]
    assert len(clip.level_wavs) == 2
    for relative in files:
        path = spec.run_dir / relative
        assert path.stat().st_size > 0, relative
    audio, rate = sf.read(spec.run_dir / clip.reconstruction_wav)
    assert rate == 8000 and len(audio) > 0
    assert (spec.run_dir / clip.original_png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_saved_model_is_the_best_epoch_and_loads_bit_identical(trained) -> None:
    spec, events, _ = trained
    completed = of(events, RunCompleted)[0]
    assert of(events, ModelSaved)[0].path == str(spec.model_path)
    card = read_metadata(spec.model_path)
    assert card["training"]["best_epoch"] == completed.best_epoch
    assert len(card["curves"]["val_loss"]) == 2
    assert card["dataset"]["files"] == 6 and card["dataset"]["skipped"] >= 6

    model, _ = load_vqvae(spec.model_path)
    again, _ = load_vqvae(spec.model_path)
    mel = torch.randn(3, 24, 32) * 2 - 6
    with torch.no_grad():
        first, second = model.eval()(mel), again.eval()(mel)
    assert torch.equal(first.reconstruction, second.reconstruction)
    assert torch.equal(first.indices, second.indices)
    best = of(events, EpochMetrics)[completed.best_epoch]
    data = prepare_data(spec)  # the same validation windows the run evaluated on
    windows = fixed_crops(
        [torch.from_numpy(s.load_mel()) for s in data.val_files],
        32,
        math.log(data.config.mel.log_floor),
        MAX_VAL_WINDOWS_PER_FILE,
    )
    assert evaluate(model, windows, 4).loss == pytest.approx(best.val_loss, rel=1e-6)


def test_cancel_keeps_a_checkpoint_and_resume_finishes(sounds: Path, tmp_path: Path) -> None:
    spec = tiny_spec(sounds, tmp_path, epochs=3, name="cancelled")
    events: list = []

    def stop_once_epoch_1_has_a_step() -> bool:
        return any(isinstance(e, StepMetrics) and e.epoch == 1 for e in events)

    result = train_vqvae(spec, events.append, stop_once_epoch_1_has_a_step)
    assert result.status == "cancelled"
    cancelled = of(events, RunCancelled)[0]
    assert cancelled.epoch == 1
    assert load_checkpoint(Path(cancelled.checkpoint_path)).next_epoch == 1
    assert not spec.model_path.exists()
    assert kinds(events)[-1] == "run_cancelled"

    resumed: list = []
    result = train_vqvae(dataclasses.replace(spec, resume=True), resumed.append)
    assert result.status == "completed"
    assert of(resumed, RunStarted)[0].start_epoch == 1
    assert [m.epoch for m in of(resumed, EpochMetrics)] == [1, 2]
    assert len(result.history) == 3  # epoch 0 comes from the checkpoint
    assert spec.model_path.exists()


def test_resume_from_an_epoch_checkpoint_matches_an_uninterrupted_run(
    sounds: Path, tmp_path: Path
) -> None:
    straight: list = []
    train_vqvae(tiny_spec(sounds, tmp_path, epochs=2, name="straight"), straight.append)

    first_half = tiny_spec(sounds, tmp_path, epochs=1, name="halves")
    train_vqvae(first_half, lambda event: None)
    second_half: list = []
    settings = dataclasses.replace(first_half.settings, epochs=2)
    train_vqvae(dataclasses.replace(first_half, settings=settings, resume=True), second_half.append)
    last_straight, last_resumed = of(straight, EpochMetrics)[-1], of(second_half, EpochMetrics)[-1]
    assert last_resumed.epoch == 1
    if not torch.cuda.is_available():  # bit for bit on CPU
        assert last_resumed.val_loss == last_straight.val_loss
        assert last_resumed.val_levels == last_straight.val_levels
    else:  # CUDA's fastest kernels may sum in any order: equal up to rounding
        assert last_resumed.val_loss == pytest.approx(last_straight.val_loss, rel=1e-5)
        assert [h.dead_codes for h in last_resumed.val_levels] == [
            h.dead_codes for h in last_straight.val_levels
        ]


def test_zero_usable_files_fails_with_the_reason(tmp_path: Path) -> None:
    write_bad_sounds(tmp_path / "bad")
    events: list = []
    with pytest.raises(DatasetError):
        train_vqvae(tiny_spec(tmp_path / "bad", tmp_path), events.append)
    (failed,) = of(events, RunFailed)
    assert "no usable audio" in failed.error and failed.checkpoint_path is None


def test_one_tiny_file_trains(tmp_path: Path) -> None:
    """A single 20 ms click: padded into one window, used for training and validation."""
    (tmp_path / "one").mkdir()
    sf.write(tmp_path / "one" / "click.wav", click(44100, 0.02), 44100)
    events: list = []
    result = train_vqvae(tiny_spec(tmp_path / "one", tmp_path, epochs=1), events.append)
    assert result.status == "completed"
    assert of(events, CheckpointSaved)[-1].next_epoch == 1
