"""What a model file may say (issue 14): its card is checked against a schema before
anything is built, with the field named; its tensors must be what the config builds."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import pytest
import torch
from card_fuzz import base_model
from helpers import TINY_MEL, TINY_MODEL, model_card

from distill.models.card_schema import (
    MAX_MODEL_ELEMENTS,
    check_card,
    prior_elements,
    vqvae_elements,
)
from distill.models.config import MAX_CODEBOOK_SIZE, PRIOR_SIZES, PriorConfig, VQVAEConfig
from distill.models.library import (
    import_model,
    list_cards,
    load_vqvae,
    load_with_prior,
    read_card,
    read_metadata,
    save_vqvae,
)
from distill.models.model_file import ModelFileError, load_model_file, save_model_file
from distill.models.prior import CodePrior
from distill.models.rvqvae import ConvVQVAE


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[dict, dict[str, torch.Tensor]]:
    """The metadata and tensors of a tiny model with a prior."""
    return load_model_file(base_model(tmp_path_factory.mktemp("schema")))


def variant(base, folder: Path, change, name: str = "bad") -> Path:
    """The base model with `change(metadata, tensors)` applied, checksum sealed again."""
    metadata, tensors = copy.deepcopy(base[0]), {k: v.clone() for k, v in base[1].items()}
    change(metadata, tensors)
    return save_model_file(folder / f"{name}.distill", tensors, metadata)


def setting(*path_and_value):
    *path, value = path_and_value

    def change(metadata: dict, tensors: dict) -> None:
        node = metadata
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def refused_everywhere(path: Path, home: Path, match: str) -> None:
    """The card, the loaders and import all refuse it, naming the field; nothing lands."""
    for action in (read_card, load_vqvae, load_with_prior, lambda p: import_model(p, "x", home)):
        with pytest.raises(ModelFileError, match=match):
            action(path)
    assert not (home / "models").exists() or not list((home / "models").iterdir())


# Each found by probing as an attacker (issue 14): before, a traceback, a 500, gigabytes
# allocated, or accepted into the library.
KNOWN_BAD = {
    "config is a number": (("config", 3), r"config: must be an object, got 3"),
    "n_fft is Infinity": (("config", "mel", "n_fft", math.inf),
                          r"config\.mel\.n_fft: must be a finite integer from 16 to 16384"),
    "hidden_channels 4096": (("config", "hidden_channels", 4096), r"config: implies [\d,]+ weights"),
    "codebook_size 50,000,000": (("config", "codebook_size", 50_000_000),
                                 r"config\.codebook_size: must be a finite integer"),
    "sample_rate 1e9": (("config", "mel", "sample_rate", 1e9), r"config\.mel\.sample_rate: must"),
    "n_fft 1e9": (("config", "mel", "n_fft", 1e9), r"config\.mel\.n_fft: must"),
    "ema_decay 'x'": (("config", "ema_decay", "x"), r"config\.ema_decay: must be a finite number"),
    "kmeans_iters 'x'": (("config", "kmeans_iters", "x"), r"config\.kmeans_iters: must"),
    "window_frames 0": (("config", "window_frames", 0), r"config\.window_frames: must"),
    "commitment_weight NaN": (("config", "commitment_weight", math.nan),
                              r"config\.commitment_weight: must be a finite number"),
    "a huge prior window": (("prior", "config", "context_steps", 10**6),
                            r"prior\.config\.context_steps: must"),
    "a prior too big": (("prior", "config", {"rvq_levels": 2, "codebook_size": 8, "context_steps": 8,
                         "hidden_size": 2048, "layers": 24, "heads": 2, "dropout": 0.0}),
                        r"prior\.config: implies"),
    "health not a list": (("health", {"level": 1}), r"health: must be a list"),
}  # fmt: skip


@pytest.mark.parametrize("case", KNOWN_BAD, ids=list(KNOWN_BAD))
def test_a_bad_card_is_refused_naming_the_field(base, tmp_path: Path, case: str) -> None:
    change, match = KNOWN_BAD[case]
    refused_everywhere(variant(base, tmp_path, setting(*change)), tmp_path / "home", match)


def test_a_config_field_missing_or_unknown_is_refused(base, tmp_path: Path) -> None:
    """Configs are closed: every field the dataclass has, and no other (so a field added
    to a config without the schema knowing fails here)."""
    home = tmp_path / "home"
    fields = [f.name for f in dataclasses.fields(VQVAEConfig)]
    fields.remove("decoder_stage_channels")  # optional: a file from before the stage
    fields += [f"mel.{f.name}" for f in dataclasses.fields(TINY_MEL)]
    for field in fields:
        *parents, name = ["config", *field.split(".")]

        def drop(metadata: dict, tensors: dict, parents=parents, name=name) -> None:
            node = metadata
            for key in parents:
                node = node[key]
            del node[name]

        refused_everywhere(variant(base, tmp_path, drop), home, rf"config\.{field}: missing")
    extra = variant(base, tmp_path, setting("prior", "config", "bias", True))
    refused_everywhere(extra, home, r"prior\.config\.bias: unknown field")


def test_a_stage_the_config_does_not_have_is_refused(base, tmp_path: Path) -> None:
    """Without decoder_stage_channels a card is one from before the stage; its file must
    then hold no stage tensors, and a stage of another width does not fit either."""
    home = tmp_path / "home"

    def drop(metadata: dict, tensors: dict) -> None:
        del metadata["config"]["decoder_stage_channels"]

    for change in (drop, setting("config", "decoder_stage_channels", 16)):
        path = variant(base, tmp_path, change)
        for load in (load_vqvae, load_with_prior, lambda p: import_model(p, "x", home)):
            with pytest.raises(ModelFileError, match=r"vqvae\.stage"):
                load(path)
    huge = variant(base, tmp_path, setting("config", "decoder_stage_channels", 10**6))
    refused_everywhere(huge, home, r"config\.decoder_stage_channels: must be")


def test_fields_that_must_agree_are_checked(base, tmp_path: Path) -> None:
    home = tmp_path / "home"
    cases = [
        (
            setting("prior", "config", "rvq_levels", 3),
            r"prior\.config\.rvq_levels: must equal config",
        ),
        (setting("prior", "config", "heads", 3), r"prior\.config\.heads: must divide"),
        (setting("prior", "seconds_per_step", 1e-9), r"prior\.seconds_per_step: must be"),
        (setting("config", "mel", "f_max", 1e6), r"config\.mel\.f_max: must be"),
        (setting("config", "mel", "hop_length", 200), r"config\.mel\.hop_length: must be at most"),
        (setting("config", "window_frames", 30), r"config\.window_frames: must be a multiple"),
    ]
    for change, match in cases:
        refused_everywhere(variant(base, tmp_path, change), home, match)


def test_weights_that_do_not_fit_the_config_are_refused_before_building(
    base, tmp_path: Path
) -> None:
    """The card alone is fine (read_card shows it); loading and importing check the
    tensors against what the config builds, on torch's meta device."""
    home = tmp_path / "home"
    wider = variant(base, tmp_path, setting("config", "hidden_channels", 32))
    assert read_metadata(wider)["config"]["hidden_channels"] == 32
    for action in (load_vqvae, lambda p: import_model(p, "x", home)):
        with pytest.raises(
            ModelFileError, match=r"tensor vqvae\.\S+: is F32 \[16.*builds F32 \[32"
        ):
            action(wider)

    def stray(metadata: dict, tensors: dict) -> None:
        tensors["junk.weight"] = torch.zeros(2)

    with pytest.raises(ModelFileError, match=r"tensor junk\.weight: is not part of"):
        load_vqvae(variant(base, tmp_path, stray))


def test_the_priors_training_codes_are_checked(base, tmp_path: Path) -> None:
    home = tmp_path / "home"

    def code_out_of_range(metadata: dict, tensors: dict) -> None:
        tensors["prior_codes.steps"][0, 0] = 8  # the codebook has 8 codes: 0 to 7

    def counts_too_many(metadata: dict, tensors: dict) -> None:
        tensors["prior_codes.file_steps"][0] += 1

    def one_more_file(metadata: dict, tensors: dict) -> None:
        metadata["prior"]["training_files"].append("extra.wav")

    cases = [
        (code_out_of_range, r"prior_codes\.steps: codes must be from 0 to 7"),
        (counts_too_many, r"prior_codes\.file_steps: must be each training file's"),
        (one_more_file, r"prior_codes\.file_steps: is I64 \[3\], the config builds I64 \[4\]"),
    ]
    for change, match in cases:
        path = variant(base, tmp_path, change)
        for action in (load_with_prior, lambda p: import_model(p, "x", home)):
            with pytest.raises(ModelFileError, match=match):
                action(path)


def test_the_counted_size_is_what_the_modules_hold() -> None:
    """vqvae_elements and prior_elements count every parameter and buffer (the prior's
    key-value cache for one clip too) without building anything; here the modules are
    built on the meta device to hold the counts to them."""
    vqvae_configs = [
        VQVAEConfig(mel=TINY_MEL, **TINY_MODEL),
        VQVAEConfig(),
        VQVAEConfig(latent_dim=32, codebook_dim=32, downsample=1, rvq_levels=4),
        VQVAEConfig(hidden_channels=96, downsample=8, codebook_size=MAX_CODEBOOK_SIZE),
    ]
    for config in vqvae_configs:
        with torch.device("meta"):
            model = ConvVQVAE(config)
        held = sum(t.numel() for t in [*model.parameters(), *model.buffers()])
        assert vqvae_elements(config.to_dict()) == held, config
    prior_configs = [
        PriorConfig(
            rvq_levels=2, codebook_size=8, context_steps=8, hidden_size=16, layers=1, heads=2
        ),
        PriorConfig(rvq_levels=4, codebook_size=256, context_steps=64, hidden_size=512, layers=6),
    ]
    for config in prior_configs:
        with torch.device("meta"):
            prior = CodePrior(config)
            prior.setup_cache(1)
        held = sum(t.numel() for t in [*prior.parameters(), *prior.buffers()])
        assert prior_elements(config.to_dict()) == held, config


def test_the_largest_models_distill_picks_fit() -> None:
    """The biggest sizes distill chooses by itself (500 files) pass, far under the cap."""
    config = VQVAEConfig.from_file_count(500)
    hidden, layers, heads, dropout = PRIOR_SIZES[-1]
    prior = PriorConfig(config.rvq_levels, config.codebook_size, config.window_steps,
                        hidden, layers, heads, dropout)  # fmt: skip
    card = {**model_card("big"), "type": "distill-model", "config": config.to_dict()}
    step = config.downsample * config.mel.hop_length / config.mel.sample_rate
    card["prior"] = {
        "config": prior.to_dict(),
        "dataset": {"path": "/sounds", "files": 500},
        "training_files": [],
        "seconds_per_step": step,
        "curves": {},
        "training": {"epochs": 1, "best_epoch": 0, "best_val_perplexity": 1.0,
                     "memorization_threshold": 2.0},
    }  # fmt: skip
    check_card(card)
    used = vqvae_elements(config.to_dict()) + prior_elements(prior.to_dict())
    assert used < MAX_MODEL_ELEMENTS // 4


def test_a_card_the_schema_refuses_is_never_written(tmp_path: Path) -> None:
    card = model_card("kicks")
    del card["dataset"]
    model = ConvVQVAE(VQVAEConfig(mel=TINY_MEL, **TINY_MODEL))
    with pytest.raises(ModelFileError, match="dataset: missing"):
        save_vqvae(tmp_path / "kicks.distill", model, card)
    assert not (tmp_path / "kicks.distill").exists()


def test_import_refuses_a_file_over_the_cap_before_reading_it(base, tmp_path: Path) -> None:
    good = variant(base, tmp_path, lambda metadata, tensors: None, "good")
    size = good.stat().st_size
    with pytest.raises(ModelFileError, match=r"the library imports model files of up to"):
        import_model(good, "x", tmp_path / "home", max_bytes=size - 1)
    assert import_model(good, "x", tmp_path / "home", max_bytes=size).is_file()


def test_a_bad_file_is_listed_with_its_reason(base, tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = home / "models"
    folder.mkdir(parents=True)
    variant(base, folder, lambda metadata, tensors: None, "good")
    variant(base, folder, setting("config", 3), "bad")
    (folder / "empty.distill").write_bytes(b"")
    listed = {entry.path.stem: entry for entry in list_cards(home)}
    assert listed["good"].card is not None and listed["good"].unreadable is None
    assert listed["bad"].card is None and "config: must be an object" in listed["bad"].unreadable
    assert "empty file" in listed["empty"].unreadable


def test_a_card_written_before_best_val_loss_was_named_reads_with_todays_names(
    base, tmp_path: Path
) -> None:
    """Files written before issue 13 say final_val_loss and final_val_perplexity for the
    best epoch's numbers, and levels for the prior's RVQ levels: they load and import,
    read with today's names, and the library's copy is written with them."""

    def old_names(metadata: dict, tensors: dict) -> None:
        del metadata["training"]["best_val_loss"]
        del metadata["prior"]["training"]["best_val_perplexity"]
        metadata["training"]["final_val_loss"] = 0.25
        metadata["prior"]["training"]["final_val_perplexity"] = 3.5
        metadata["prior"]["config"]["levels"] = metadata["prior"]["config"].pop("rvq_levels")

    old = variant(base, tmp_path, old_names, "old")
    assert load_model_file(old)[0]["training"]["final_val_loss"] == 0.25  # the file says so
    for card in (read_card(old), load_vqvae(old)[1], load_with_prior(old).card):
        assert card.training.best_val_loss == 0.25
        assert card.prior is not None and card.prior.training.best_val_perplexity == 3.5
        assert card.prior.config.rvq_levels == card.config.rvq_levels
    metadata = read_metadata(old)
    assert "final_val_loss" not in metadata["training"]
    assert "final_val_perplexity" not in metadata["prior"]["training"]
    assert "levels" not in metadata["prior"]["config"]
    imported = load_model_file(import_model(old, "renamed", tmp_path / "home"))[0]
    assert imported["training"]["best_val_loss"] == 0.25
    assert imported["prior"]["training"]["best_val_perplexity"] == 3.5
    assert "final_val_loss" not in imported["training"]
    assert "levels" not in imported["prior"]["config"]
