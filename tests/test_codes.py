"""The code editor's operations (inference/codes.py) and `distill codes`, on a tiny model
with a prior: encode, decode, regenerate a range, and refusals of foreign or bad files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from commands import distill
from helpers import tiny_prior_spec, tiny_spec, write_good_sounds

import distill.inference.codes as codes_module
from distill.inference.codes import (
    CodeGrid,
    CodesError,
    check_belongs,
    decode_chunks,
    decode_grid,
    decode_levels,
    encode_file,
    model_fingerprint,
    read_codes,
)
from distill.inference.one_shot import MAX_TRIES
from distill.inference.regenerate import regenerate, stretch_is_silent
from distill.models.library import load_vqvae, load_with_prior
from distill.models.sampling import Sampling
from distill.training.prior import train_prior
from distill.training.vqvae import train_vqvae

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("codes")
    sounds = base / "sounds"
    write_good_sounds(sounds)
    models = {}
    for name, seed in (("kit", 0), ("other", 1)):  # other weights, other codebooks
        spec = tiny_spec(sounds, base / name, epochs=1, name=name)
        spec = dataclasses.replace(spec, settings=dataclasses.replace(spec.settings, seed=seed))
        train_vqvae(spec, lambda event: None)
        models[name] = spec.model_path
    train_prior(tiny_prior_spec(models["kit"], sounds, base / "kit-prior"), lambda e: None)
    return {"base": base, "sounds": sounds, "models": models}


def test_encode_decode_and_regenerate_a_range(world) -> None:
    loaded = load_with_prior(world["models"]["kit"])
    sound = sorted(world["sounds"].iterdir())[0]
    grid = encode_file(loaded.vqvae, "kit", sound)
    assert grid.codes.shape[0] == loaded.vqvae.config.rvq_levels and grid.steps > 4
    back = CodeGrid.from_json(json.loads(json.dumps(grid.to_json())))
    assert np.array_equal(back.codes, grid.codes) and back.fingerprint == grid.fingerprint
    audio = decode_grid(loaded.vqvae, grid)
    assert len(audio) == grid.steps * grid.samples_per_step and np.abs(audio).max() > 0

    start, end = 2, 4
    sampling = Sampling(temperature=1.0)
    once = regenerate(loaded, grid, start, end, sampling, seed=7).grid
    again = regenerate(loaded, grid, start, end, sampling, seed=7).grid
    assert np.array_equal(once.codes, again.codes)  # same seed, same result
    assert np.array_equal(once.codes[:, :start], grid.codes[:, :start])  # before: untouched
    assert np.array_equal(once.codes[:, end:], grid.codes[:, end:])  # after: untouched
    changed = [regenerate(loaded, grid, start, end, sampling, seed=s).grid for s in range(8)]
    assert any(not np.array_equal(c.codes[:, start:end], grid.codes[:, start:end]) for c in changed)


def test_a_stretch_that_decodes_to_silence_is_drawn_again_then_flagged(world) -> None:
    """Generation's silence rule in the editor: the tiny model decodes everything to
    silence, so every round is drawn and the result says so; made audible (its decoder's
    last bias raised), the first round's best draw is kept, as before the rule."""
    loaded = load_with_prior(world["models"]["kit"])
    grid = encode_file(loaded.vqvae, "kit", sorted(world["sounds"].iterdir())[0])
    silent = regenerate(loaded, grid, 2, 4, Sampling(), seed=3)
    assert silent.silent and silent.draws == MAX_TRIES
    assert stretch_is_silent(loaded.vqvae, silent.grid, 2, 4)

    loud = load_with_prior(world["models"]["kit"])
    with torch.no_grad():
        loud.vqvae.decoder.net[-1].bias += 4.0
    assert not stretch_is_silent(loud.vqvae, grid, 2, 4)
    heard = regenerate(loud, grid, 2, 4, Sampling(), seed=3)
    assert not heard.silent and heard.draws == 1
    assert np.array_equal(heard.grid.codes, silent.grid.codes)  # the same first-round best


def test_a_long_grid_decoded_in_pieces_sounds_as_in_one(world, monkeypatch) -> None:
    """The editor and `distill codes decode` decode piece by piece, so memory does not
    grow with the sound: the pieces give the sound one piece would, with levels muted or
    not, to within float rounding (the convolutions round differently on other lengths,
    and Griffin-Lim on random codes stirs that up to about -70 dB; test_mel.py shows the
    pieces' Griffin-Lim exact). The mel is raised 4 nepers: a one-epoch model's output is
    near silence, where every rounding is as loud as the sound."""
    vqvae, _ = load_vqvae(world["models"]["kit"])
    assert vqvae.stage is not None  # its convolutions' reach is counted too
    vqvae.mel_mean += 4
    rng = np.random.default_rng(0)
    grid = encode_file(vqvae, "kit", sorted(world["sounds"].iterdir())[0])
    grid = grid.with_codes(rng.integers(0, grid.codebook_size, (grid.codes.shape[0], 160)))
    for muted in (set(), {1}):
        monkeypatch.setattr(codes_module, "DECODE_CHUNK_FRAMES", 10**6)
        assert decode_chunks(vqvae, grid) == 1
        whole = decode_levels(vqvae, grid, muted, seed=5)
        monkeypatch.setattr(codes_module, "DECODE_CHUNK_FRAMES", 128)
        assert decode_chunks(vqvae, grid) == 5
        pieces = decode_levels(vqvae, grid, muted, seed=5)
        assert len(pieces) == len(whole) == grid.steps * grid.samples_per_step
        error = np.sqrt(np.mean(np.square(pieces - whole)) / np.mean(np.square(whole)))
        assert error < 1e-3, (muted, error)  # -60 dB: float rounding, which Griffin-Lim stirs


def test_a_grid_from_another_model_is_refused(world) -> None:
    kit, _ = load_vqvae(world["models"]["kit"])
    other, _ = load_vqvae(world["models"]["other"])
    assert model_fingerprint(kit) != model_fingerprint(other)
    grid = encode_file(kit, "kit", sorted(world["sounds"].iterdir())[0])
    check_belongs(grid, kit, "kit")
    with pytest.raises(CodesError, match="made by model 'kit'.*model 'other'.*cannot decode"):
        check_belongs(grid, other, "other")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda d: d.update(format="zip"), "not a distill codes file"),
        (lambda d: d.update(version=9), "version 9"),
        (lambda d: d.update(model="kit"), "the model's name and fingerprint"),
        (lambda d: d.update(codebook_size=-1), "'codebook_size' must be a positive integer"),
        (lambda d: d.update(rvq_levels=True), "'rvq_levels' must be a positive integer"),
        (lambda d: d["codes"].pop(), "one row per RVQ level"),
        (lambda d: d["codes"][0].pop(), "the same length"),
        (lambda d: d["codes"][0].__setitem__(0, 10**9), "every code must be an integer"),
        (lambda d: d["codes"][0].__setitem__(0, 1.5), "every code must be an integer"),
        (lambda d: d.update(codes=[[], []]), "1 to 100000 time steps"),
    ],
)
def test_a_bad_codes_file_is_refused_with_the_reason(change, why) -> None:
    data = CodeGrid("kit", "abc", np.zeros((2, 5), dtype=np.int64), 8, 8000, 256).to_json()
    change(data)
    with pytest.raises(CodesError, match=why):
        CodeGrid.from_json(data)


def test_the_cli_round_trip_and_refusals(world, tmp_path) -> None:
    home, kit, other = tmp_path / "home", str(world["models"]["kit"]), str(world["models"]["other"])
    sound = sorted(world["sounds"].iterdir())[0]
    codes = tmp_path / "kick.json"
    encoded = distill(home, "codes", "encode", kit, str(sound), "--out", str(codes))
    assert encoded.returncode == 0, encoded.stderr
    data = json.loads(codes.read_text())
    assert data["format"] == "distill-codes" and data["model"]["name"] == "kit"

    decoded = distill(home, "codes", "decode", kit, str(codes), "--out", str(tmp_path / "k.wav"))
    assert decoded.returncode == 0, decoded.stderr
    audio, rate = sf.read(tmp_path / "k.wav")
    assert (
        rate == data["sample_rate"]
        and len(audio) == len(data["codes"][0]) * data["samples_per_step"]
    )

    seconds_per_step = data["samples_per_step"] / data["sample_rate"]
    args = ["--start", str(2 * seconds_per_step), "--end", str(4 * seconds_per_step), "--seed", "3"]
    outs = [tmp_path / "r1.json", tmp_path / "r2.json"]
    for out in outs:
        made = distill(home, "codes", "regenerate", kit, str(codes), *args, "--out", str(out))
        assert made.returncode == 0, made.stderr
        assert "steps 2 to 4" in made.stdout
        assert "silence (under -60 dBFS) on all 4 rounds" in made.stdout  # the tiny model's
    assert outs[0].read_text() == outs[1].read_text()
    new = json.loads(outs[0].read_text())["codes"]
    assert [row[:2] + row[4:] for row in new] == [row[:2] + row[4:] for row in data["codes"]]

    refused = distill(home, "codes", "decode", other, str(codes))
    assert refused.returncode != 0 and "made by model 'kit'" in refused.stdout
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CodesError, match="is not JSON"):
        read_codes(tmp_path / "bad.json")
