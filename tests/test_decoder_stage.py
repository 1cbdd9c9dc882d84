"""The decoder stage: it starts as the reference path, learns, is kept in the model file,
and a model from before it still plays, through Griffin-Lim, saying so on its card."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from container import build_file, split_file
from helpers import TINY_MEL, TINY_MODEL, stamp, tiny_spec, write_good_sounds

from distill.audio.mel import MelSpectrogram, mel_to_audio
from distill.core.store import Store
from distill.events import (
    STOP_KEPT,
    DecoderStageProgress,
    DecoderStageTrained,
    PreviewReady,
    RunCancelled,
    RunCompleted,
    RunQueued,
    RunStarted,
    StepMetrics,
)
from distill.models.config import VQVAEConfig
from distill.models.library import load_vqvae, read_card, read_metadata, save_vqvae
from distill.models.magnitude import render, stage_magnitude
from distill.models.model_file import FORMAT_VERSION
from distill.models.rvqvae import ConvVQVAE
from distill.paths import KEEP_BEST_FILE
from distill.run_types import never
from distill.server.inputs import InputError, train_options
from distill.server.views import progress_of, run_context
from distill.training.stage import train_stage
from distill.training.vqvae import prepare_data, train_vqvae


def test_a_new_stage_is_exactly_the_pseudo_inverse() -> None:
    model = ConvVQVAE(VQVAEConfig(mel=TINY_MEL, **TINY_MODEL)).eval()
    log_mel = torch.randn(TINY_MEL.n_mels, 40) - 4
    with torch.no_grad():
        baseline = torch.exp(model.stage.baseline(log_mel.unsqueeze(0))[0])
        assert torch.equal(stage_magnitude(model, log_mel), baseline)
    assert baseline.shape == (TINY_MEL.n_fft // 2 + 1, 40)


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A tiny run whose stage trains long enough to move."""
    tmp_path = tmp_path_factory.mktemp("staged")
    write_good_sounds(tmp_path / "sounds", count=8)
    spec = tiny_spec(tmp_path / "sounds", tmp_path, epochs=2, name="staged")
    spec = replace(spec, settings=replace(spec.settings, stage_steps=120))
    events: list = []
    train_vqvae(spec, events.append)
    return spec, events


def test_the_stage_trains_and_gets_closer_than_the_pseudo_inverse(staged) -> None:
    spec, events = staged
    progress = [e for e in events if isinstance(e, DecoderStageProgress)]
    assert [p.step for p in progress] == [50, 100, 120]
    trained = [e for e in events if isinstance(e, DecoderStageTrained)]
    assert len(trained) == 1 and trained[0].steps == 120
    # the kept stage is never worse on the held-out files than where it started
    assert trained[0].val_loss <= trained[0].val_loss_baseline
    assert events.index(trained[0]) < events.index(
        next(e for e in events if isinstance(e, RunCompleted))
    )


def test_the_stage_learns_the_sounds_it_is_trained_on(staged) -> None:
    """Judged on its own training files, the stage must beat the pseudo-inverse."""
    spec, _ = staged
    model, _ = load_vqvae(spec.model_path)
    data = prepare_data(spec)
    model.stage.load_state_dict(ConvVQVAE(model.config).stage.state_dict())  # back to the start
    events: list = []
    trained = train_stage(model, data.train_files, data.train_files, 120, 0, events.append, never)
    assert trained.val_loss < trained.val_loss_baseline
    assert trained.val_convergence < trained.val_convergence_baseline


def test_the_model_file_carries_the_stage_and_plays_through_it(staged) -> None:
    spec, events = staged
    card = read_card(spec.model_path)
    assert card.config.decoder_stage_channels == TINY_MODEL["decoder_stage_channels"]
    assert card.decoder_stage is not None and card.decoder_stage.steps == 120
    assert card.listening().startswith("through its decoder stage")
    assert split_file(spec.model_path.read_bytes())[0] == FORMAT_VERSION == 2
    # a stage with weights of its own (this tiny run may keep the start) survives the file
    model, _ = load_vqvae(spec.model_path)
    torch.nn.init.normal_(model.stage.output.weight, std=0.1)
    metadata = read_metadata(spec.model_path)
    metadata.pop("config")
    again, _ = load_vqvae(save_vqvae(spec.model_path.with_name("moved.distill"), model, metadata))
    assert torch.equal(again.stage.output.weight, model.stage.output.weight)
    log_mel = torch.randn(TINY_MEL.n_mels, 30) - 4
    with torch.no_grad():
        trained = stage_magnitude(again, log_mel)
        assert not torch.allclose(trained, torch.exp(again.stage.baseline(log_mel[None])[0]))
    through_stage = render(again, log_mel, length=30 * TINY_MEL.hop_length)
    reference = mel_to_audio(log_mel, TINY_MEL, length=30 * TINY_MEL.hop_length)
    assert through_stage.shape == reference.shape and not torch.allclose(through_stage, reference)
    # the final previews are the saved model's, through the stage, Griffin-Lim beside them
    final = [e for e in events if isinstance(e, PreviewReady)][-1]
    assert all(c.griffin_lim_wav and c.reconstruction_wav.startswith("previews/model/")
               for c in final.clips)  # fmt: skip


def test_a_model_from_before_the_stage_loads_and_plays_through_griffin_lim(
    tmp_path: Path,
) -> None:
    """A version 1 file: no decoder_stage_channels, no stage tensors, and the name its
    best validation loss had then."""
    config = VQVAEConfig(mel=TINY_MEL, **{**TINY_MODEL, "decoder_stage_channels": 0})
    model = ConvVQVAE(config)
    card = {
        "name": "old", "dataset": {"path": "/x", "fingerprint": "f", "files": 6, "seconds": 1.0},
        "health": [], "curves": {}, "training": {"epochs": 1, "best_epoch": 0, "best_val_loss": 1.0},
    }  # fmt: skip
    path = save_vqvae(tmp_path / "new.distill", model, card)
    _, meta, blob = split_file(path.read_bytes())
    old_meta = json.loads(meta)
    del old_meta["config"]["decoder_stage_channels"]
    old_meta["training"]["final_val_loss"] = old_meta["training"].pop("best_val_loss")
    old = tmp_path / "old.distill"
    old.write_bytes(build_file(json.dumps(old_meta).encode(), blob, version=1))

    loaded, loaded_card = load_vqvae(old)
    assert loaded.stage is None and loaded.config.decoder_stage_channels == 0
    assert "trained before the decoder stage" in loaded_card.listening()
    assert loaded_card.training.best_val_loss == 1.0 == read_card(old).training.best_val_loss
    log_mel = MelSpectrogram(TINY_MEL)(torch.randn(2000) * 0.1)
    assert torch.equal(
        render(loaded, log_mel, length=2000, seed=3),
        mel_to_audio(log_mel, TINY_MEL, length=2000, seed=3),
    )


def test_a_run_cancelled_in_the_stage_resumes_into_it(tmp_path: Path) -> None:
    write_good_sounds(tmp_path / "sounds")
    spec = tiny_spec(tmp_path / "sounds", tmp_path, epochs=2, name="cancel-stage")
    spec = replace(spec, settings=replace(spec.settings, stage_steps=60))
    events: list = []

    def in_the_stage() -> bool:
        return any(isinstance(e, DecoderStageProgress) for e in events)

    assert train_vqvae(spec, events.append, in_the_stage).status == "cancelled"
    cancelled = [e for e in events if isinstance(e, RunCancelled)]
    assert len(cancelled) == 1 and cancelled[0].epoch == 2
    assert not spec.model_path.exists()

    again: list = []
    resumed = replace(spec, resume=True)
    assert train_vqvae(resumed, again.append).status == "completed"
    assert not any(type(e).__name__ == "EpochMetrics" for e in again)  # straight to the stage
    assert [e.steps for e in again if isinstance(e, DecoderStageTrained)] == [60]
    assert read_metadata(spec.model_path)["decoder_stage"]["steps"] == 60


def test_a_vqvae_stopped_keeping_the_best_saves_its_model(tmp_path: Path) -> None:
    """KEEP_BEST beside the stop: stopped in its epochs, the run saves the best epoch so
    far as its model (no stage trained); stopped in the stage, it keeps the stage's best."""
    write_good_sounds(tmp_path / "sounds")
    for name, stop_when in (
        ("in-epochs", lambda events: any(isinstance(e, StepMetrics) and e.epoch == 1
                                         for e in events)),
        ("in-stage", lambda events: any(isinstance(e, DecoderStageProgress) for e in events)),
    ):  # fmt: skip
        spec = tiny_spec(tmp_path / "sounds", tmp_path, epochs=30, name=name)
        spec = replace(spec, settings=replace(spec.settings, stage_steps=400))
        spec.run_dir.mkdir(parents=True)
        (spec.run_dir / KEEP_BEST_FILE).touch()
        events: list = []
        epochs = 30 if name == "in-epochs" else 1
        spec = replace(spec, settings=replace(spec.settings, epochs=epochs))
        result = train_vqvae(spec, events.append, lambda f=stop_when, e=events: f(e))
        assert result.status == "completed", name
        done = [e for e in events if isinstance(e, RunCompleted)][0]
        assert done.stopped_early == STOP_KEPT
        card = read_card(spec.model_path)
        assert card.training.best_epoch == done.best_epoch
        stage = [e for e in events if isinstance(e, DecoderStageTrained)]
        if name == "in-epochs":
            assert done.epochs_run == 1 and not stage and card.decoder_stage is None
        else:
            assert len(stage) == 1 and 0 < stage[0].steps < 400
            assert card.decoder_stage is not None and card.decoder_stage.steps == stage[0].steps


def test_no_stage_steps_means_a_model_without_a_stage(tmp_path: Path) -> None:
    write_good_sounds(tmp_path / "sounds")
    spec = tiny_spec(tmp_path / "sounds", tmp_path, epochs=1, name="no-stage")
    spec = replace(spec, settings=replace(spec.settings, stage_steps=0))
    events: list = []
    train_vqvae(spec, events.append)
    assert not any(isinstance(e, DecoderStageTrained) for e in events)
    card = read_card(spec.model_path)
    assert card.config.decoder_stage_channels == 0 and card.decoder_stage is None
    assert (
        card.listening() == "through Griffin-Lim: trained without a decoder stage (--stage-steps 0)"
    )
    assert load_vqvae(spec.model_path)[0].stage is None


def test_a_run_page_loaded_during_the_stage_shows_the_stage(tmp_path: Path) -> None:
    """A reload (or a first visit) while the stage trains reads the last progress event
    from SQLite: the stage's step, not the last epoch's."""
    payloads = [
        RunQueued("vqvae", "/data/kicks", {}),
        RunStarted("vqvae", "/data/kicks", 1, 0, 4, {}),
        StepMetrics(0, 3, 4, loss=0.9, recon_loss=0.8, commit_loss=0.1),
        DecoderStageProgress(50, 600, 0.75),
        DecoderStageProgress(100, 600, 0.5),
    ]

    async def label(events: int) -> str:
        async with await Store.open(tmp_path / f"distill-{events}.sqlite") as store:
            await store.create_run("r1", "vqvae", "/data/kicks", {}, "kicks")
            await store.append(stamp("r1", payloads[:events]))
            context = await run_context(store, "r1", ("progress",))
            assert context is not None
            return context["progress"]["label"]

    assert asyncio.run(label(3)) == "epoch 1 of 1, step 4 of 4, loss 0.9000"
    assert asyncio.run(label(5)) == "1 of 1 epochs; decoder stage, step 100 of 600, loss 0.5000"


def test_the_run_page_says_the_stage_is_training() -> None:
    run = {"status": "running", "epochs": 30, "epoch": 29}
    step = DecoderStageProgress(200, 600, 0.8125).to_dict()
    progress = progress_of(run, step)
    assert progress["label"] == "30 of 30 epochs; decoder stage, step 200 of 600, loss 0.8125"
    assert progress["fraction"] == 1.0


@pytest.mark.parametrize("steps", ["-1", "100001", "x"])
def test_the_form_refuses_stage_steps_out_of_range(steps: str) -> None:
    with pytest.raises(InputError, match="decoder stage steps"):
        train_options({"stage_steps": steps})
    assert train_options({"stage_steps": "0"})[0]["stage_steps"] == 0
