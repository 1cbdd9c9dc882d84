"""train_prior on a tiny model: events, best epoch, memorization, the model file, resume."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import soundfile as sf
import torch
from helpers import tiny_prior_spec, tiny_spec, write_good_sounds

from distill.audio.synth import chirp
from distill.events import (
    CAUSE_VAL_PERPLEXITY,
    STOP_KEPT,
    STOP_PATIENCE,
    CodesExtracted,
    GenerationMeasured,
    MemorizationWarning,
    PriorEpochMetrics,
    PriorSaved,
    PriorStepMetrics,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
)
from distill.models.library import (
    load_vqvae,
    load_with_prior,
    read_card,
    read_metadata,
    save_vqvae,
)
from distill.models.model_file import ModelFileError, read_model_metadata
from distill.models.sampling import generate_codes
from distill.paths import KEEP_BEST_FILE
from distill.training.checkpoint import load_checkpoint
from distill.training.memorization import memorization_threshold
from distill.training.prior import evaluate, prepare_codes, train_prior
from distill.training.prior_data import fixed_code_windows
from distill.training.vqvae import train_vqvae


def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def trained_model(tmp_path: Path, dataset: Path, name: str = "tiny") -> Path:
    spec = tiny_spec(dataset, tmp_path, epochs=1, name=name)
    train_vqvae(spec, lambda event: None)
    return spec.model_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One VQ-VAE and a 3-epoch prior on it, shared by the read-only tests below."""
    tmp_path = tmp_path_factory.mktemp("prior")
    write_good_sounds(tmp_path / "sounds", count=8)
    model_path = trained_model(tmp_path, tmp_path / "sounds")
    vqvae_card = read_metadata(model_path)
    spec = tiny_prior_spec(model_path, tmp_path / "sounds", tmp_path, epochs=3)
    events: list = []
    result = train_prior(spec, events.append)
    return spec, events, result, vqvae_card


def test_the_kept_prior_is_measured_once_and_its_card_carries_the_figures(trained) -> None:
    spec, events, _, _ = trained
    kinds = [e.kind for e in events if e.kind != "prior_step_metrics"]
    assert kinds.count("generation_measured") == 1
    last_epoch = len(kinds) - 1 - kinds[::-1].index("prior_epoch_metrics")
    assert last_epoch < kinds.index("generation_measured") < kinds.index("prior_saved")
    measured = of(events, GenerationMeasured)[0]
    best = of(events, PriorEpochMetrics)[-1].best_epoch
    assert measured.epoch == best and measured.sampled_clips == spec.settings.generation_clips
    # the anchors bracket what can be said: the training sounds are all copies, noise none
    assert measured.coverage_copies > measured.coverage_noise
    assert measured.kad_copies is not None and measured.kad_noise is not None
    assert measured.kad_copies < measured.kad_noise
    for share in (measured.precision, measured.coverage, measured.copy_share, measured.onset_share):
        assert 0.0 <= share <= 1.0
    card = read_card(spec.model_path)
    assert card.prior is not None and card.prior.training.generation == measured
    words = dict(measured.words())
    assert {"plausible", "varied", "new", "like yours"} <= set(words)
    assert f"{measured.coverage:.0%} of your sounds" in words["varied"]


def test_events_arrive_in_order_with_every_epochs_numbers(trained) -> None:
    spec, events, result, _ = trained
    assert result.status == "completed"
    kinds = [e.kind for e in events if e.kind != "prior_step_metrics"]
    assert kinds[:2] == ["codes_extracted", "run_started"]
    assert kinds[-2:] == ["prior_saved", "run_completed"]
    assert of(events, RunStarted)[0].run_type == "prior"
    started = of(events, RunStarted)[0]
    steps = of(events, PriorStepMetrics)
    assert len(steps) == 3 * started.steps_per_epoch
    codes = of(events, CodesExtracted)[0]
    assert (codes.train_files, codes.val_files, codes.rvq_levels, codes.codebook_size) == (
        7,
        1,
        2,
        8,
    )
    assert codes.context_steps == 8  # one VQ-VAE window: 32 frames / downsample 4
    assert codes.memorization_threshold == 2.0 and not codes.dataset_changed
    for m in of(events, PriorEpochMetrics):
        assert m.val_perplexity == pytest.approx(math.exp(m.val_loss))
        assert 1.0 <= m.val_perplexity <= 8.0 + 1e-6 or m.epoch == 0  # at most uniform, roughly
        assert m.train_loss > 0


def test_best_epoch_is_the_lowest_val_perplexity_and_is_what_the_file_keeps(trained) -> None:
    spec, events, _, _ = trained
    epochs = of(events, PriorEpochMetrics)
    completed = of(events, RunCompleted)[0]
    best = min(epochs, key=lambda m: m.val_perplexity)
    assert completed.best_epoch == best.epoch == epochs[-1].best_epoch
    assert completed.best_val_loss == best.val_loss

    loaded = load_with_prior(spec.model_path)
    vqvae, card = load_vqvae(spec.model_path)
    data = prepare_codes(spec, vqvae, card)
    windows = fixed_code_windows(data.val, loaded.prior.config.context_steps)
    assert evaluate(loaded.prior, windows, 4) == pytest.approx(best.val_loss, rel=1e-5)


def test_the_card_shows_the_prior_without_loading_weights(trained) -> None:
    spec, events, _, vqvae_card = trained
    card = read_metadata(spec.model_path)
    prior = card["prior"]
    assert prior["config"]["rvq_levels"] == 2 and prior["config"]["context_steps"] == 8
    assert prior["config"]["hidden_size"] == 16 and prior["config"]["layers"] == 1
    assert len(prior["curves"]["val_perplexity"]) == 3
    assert prior["training"]["best_epoch"] == of(events, RunCompleted)[0].best_epoch
    assert prior["training"]["memorization_threshold"] == 2.0
    assert len(prior["training_files"]) == 7 and all(
        not Path(f).is_absolute() for f in prior["training_files"]
    )
    assert of(events, PriorSaved)[0].path == str(spec.model_path)
    # everything the VQ-VAE's card said is still there
    assert {k: v for k, v in card.items() if k != "prior"} == vqvae_card


def test_round_trip_train_save_load_sample(trained) -> None:
    spec, _, _, _ = trained
    loaded = load_with_prior(spec.model_path)
    again = load_with_prior(spec.model_path)
    for name, tensor in loaded.prior.state_dict().items():
        assert torch.equal(tensor, again.prior.state_dict()[name]), name
    assert [len(c) for c in loaded.training_codes] == [len(c) for c in again.training_codes]
    assert len(loaded.training_codes) == 7

    steps = 3 * loaded.prior.config.context_steps
    codes = generate_codes(loaded.prior, steps, [torch.Generator().manual_seed(0)])
    assert codes.shape == (1, steps, 2)
    mel = loaded.vqvae.decode_indices(codes)
    assert mel.shape == (1, 24, steps * 4) and torch.isfinite(mel).all()


def test_the_vqvae_is_untouched_by_the_prior(trained) -> None:
    spec, _, _, _ = trained
    loaded = load_with_prior(spec.model_path)
    vqvae, _ = load_vqvae(spec.model_path)
    for name, tensor in vqvae.state_dict().items():
        assert torch.equal(tensor, loaded.vqvae.state_dict()[name]), name


def test_memorization_thresholds_rise_with_the_dataset() -> None:
    assert [memorization_threshold(n) for n in (1, 20, 21, 100, 101, 500)] == [2, 2, 3, 3, 5, 5]


def test_a_prior_that_learns_its_one_file_by_heart_warns(tmp_path: Path) -> None:
    """One file is both training and validation: the prior can learn it exactly (without
    pitch-shifted takes, which would give it more than the one file to learn)."""
    (tmp_path / "one").mkdir()
    sf.write(tmp_path / "one" / "chirp.wav", chirp(200, 2000, 0.8, 8000), 8000)
    model_path = trained_model(tmp_path, tmp_path / "one")
    spec = tiny_prior_spec(model_path, tmp_path / "one", tmp_path, epochs=25, dropout=0.0)
    spec = dataclasses.replace(
        spec,
        settings=dataclasses.replace(
            spec.settings, learning_rate=3e-3, min_steps_per_epoch=8, augment=False
        ),
        overrides={**spec.overrides, "hidden_size": 32},
    )
    events: list = []
    train_prior(spec, events.append)
    epochs = {m.epoch: m for m in of(events, PriorEpochMetrics)}
    warnings = [w for w in of(events, MemorizationWarning) if w.cause == CAUSE_VAL_PERPLEXITY]
    assert warnings, f"lowest val perplexity {min(m.val_perplexity for m in epochs.values())}"
    for warning in warnings:
        assert warning.threshold == 2.0
        assert warning.val_perplexity == epochs[warning.epoch].val_perplexity < 2.0
        assert "replaying" in warning.message
    warned = {w.epoch for w in warnings}
    assert all(m.val_perplexity >= 2.0 for e, m in epochs.items() if e not in warned)


def test_cancel_keeps_a_checkpoint_and_resume_finishes(trained, tmp_path: Path) -> None:
    spec, _, _, _ = trained
    spec = dataclasses.replace(spec, run_dir=tmp_path / "run", run_id="cancelled")
    events: list = []

    def stop_in_epoch_1() -> bool:
        return any(isinstance(e, PriorStepMetrics) and e.epoch == 1 for e in events)

    result = train_prior(spec, events.append, stop_in_epoch_1)
    assert result.status == "cancelled"
    cancelled = of(events, RunCancelled)[0]
    assert cancelled.epoch == 1
    assert load_checkpoint(Path(cancelled.checkpoint_path)).next_epoch == 1

    resumed: list = []
    result = train_prior(dataclasses.replace(spec, resume=True), resumed.append)
    assert result.status == "completed"
    assert of(resumed, RunStarted)[0].start_epoch == 1
    assert [m.epoch for m in of(resumed, PriorEpochMetrics)] == [1, 2]
    assert len(result.history) == 3
    assert read_metadata(spec.model_path)["prior"]["run_id"] == "cancelled"


def test_a_prior_with_patience_stops_before_its_epochs(tmp_path: Path) -> None:
    """Eight short sounds, no dropout, a high learning rate: the prior learns its seven
    training files by heart and validation stops improving long before 40 epochs."""
    write_good_sounds(tmp_path / "sounds", count=8)
    model_path = trained_model(tmp_path, tmp_path / "sounds")
    spec = tiny_prior_spec(model_path, tmp_path / "sounds", tmp_path, epochs=40,
                           dropout=0.0, hidden_size=32)  # fmt: skip
    settings = dataclasses.replace(spec.settings, learning_rate=3e-3, patience=2)
    events: list = []
    result = train_prior(dataclasses.replace(spec, settings=settings), events.append)
    assert result.status == "completed"
    done = of(events, RunCompleted)[0]
    epochs = of(events, PriorEpochMetrics)
    assert done.stopped_early == STOP_PATIENCE and done.patience == 2
    assert done.epochs_run == len(epochs) < 40
    assert epochs[-1].epoch - done.best_epoch == 2  # two epochs without a better one
    assert all(m.val_perplexity > epochs[done.best_epoch].val_perplexity for m in epochs[-2:])
    prior = read_metadata(spec.model_path)["prior"]
    assert prior["training"]["best_epoch"] == done.best_epoch
    assert prior["training"]["patience"] == 2


def test_a_stop_that_keeps_the_best_saves_the_prior(trained, tmp_path: Path) -> None:
    """KEEP_BEST beside the stop: the run completes with its best epoch so far saved."""
    spec, _, _, _ = trained
    spec = dataclasses.replace(spec, run_dir=tmp_path / "run", run_id="kept")
    spec.run_dir.mkdir(parents=True)
    (spec.run_dir / KEEP_BEST_FILE).touch()
    events: list = []

    def stop_in_epoch_2() -> bool:
        return any(isinstance(e, PriorStepMetrics) and e.epoch == 2 for e in events)

    result = train_prior(spec, events.append, stop_in_epoch_2)
    assert result.status == "completed" and not of(events, RunCancelled)
    done = of(events, RunCompleted)[0]
    assert (done.stopped_early, done.epochs_run) == (STOP_KEPT, 2)
    assert of(events, PriorSaved)
    prior = read_metadata(spec.model_path)["prior"]
    assert (prior["run_id"], prior["training"]["best_epoch"]) == ("kept", done.best_epoch)


def test_a_model_replaced_while_its_prior_trains_is_not_overwritten(tmp_path: Path) -> None:
    write_good_sounds(tmp_path / "sounds")
    model_path = trained_model(tmp_path, tmp_path / "sounds")
    spec = tiny_prior_spec(model_path, tmp_path / "sounds", tmp_path, epochs=2)
    replaced = False

    def replace_the_model_once() -> bool:
        nonlocal replaced
        if not replaced:
            vqvae, _ = load_vqvae(model_path)
            save_vqvae(model_path, vqvae, {**read_metadata(model_path), "created": "later"})
            replaced = True
        return False

    events: list = []
    with pytest.raises(ModelFileError, match="replaced by another model"):
        train_prior(spec, events.append, replace_the_model_once)
    assert "replaced" in of(events, RunFailed)[0].error
    assert "prior" not in read_model_metadata(model_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA where there is none")
def test_asking_for_cuda_without_one_fails_with_the_reason(trained, tmp_path: Path) -> None:
    spec, _, _, _ = trained
    settings = dataclasses.replace(spec.settings, device="cuda")
    spec = dataclasses.replace(spec, run_dir=tmp_path / "run", settings=settings)
    events: list = []
    with pytest.raises(ValueError, match="no CUDA device"):
        train_prior(spec, events.append)
    assert "torch sees no CUDA device" in of(events, RunFailed)[0].error


def test_the_prior_is_saved_on_the_cpu_wherever_it_trained(trained) -> None:
    spec, _, _, _ = trained
    loaded = load_with_prior(spec.model_path)  # loads on a machine without CUDA as well
    assert {p.device.type for p in loaded.prior.parameters()} == {"cpu"}
    assert read_metadata(spec.model_path)["prior"]["training"]["device"] == spec.settings.device
