"""Outputs a user can trust, in Chromium against a real server (issue 28): the code
editor says when what it made is silence, draws its sounds with the run pages' players and
redraws its mel after an edit.

The module's tiny models decode every sound to near silence (RMS about 5e-4, under
generation's -60 dBFS rule): what a user met with a model whose prior draws silence.
"""

# ruff: noqa: F811  (the fixtures imported from test_browser are the tests' arguments)
from __future__ import annotations

from pathlib import Path

import pytest
from test_browser import (  # noqa: F401
    SCREENSHOTS,
    TAKE_SCREENSHOTS,
    browser,
    page,
    play,
    player_of,
    server,
    shot,
    wait_drawn,
)
from test_browser import dataset as dataset  # noqa: F401  (the fixtures this module uses)

from distill.server.serve import ServerThread

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(server: ServerThread, dataset: Path) -> dict[str, str]:
    """`kit` (a tiny model with a prior) and `plain` (the same model before its prior),
    in the server's library."""
    import shutil

    from helpers import tiny_prior_spec, tiny_spec

    from distill.training.prior import train_prior
    from distill.training.vqvae import train_vqvae

    library = server.settings.home / "models"
    library.mkdir(parents=True, exist_ok=True)
    work = dataset.parent / "outputs-work"
    spec = tiny_spec(dataset, work, epochs=1, name="kit")
    train_vqvae(spec, lambda event: None)
    shutil.copy(spec.model_path, library / "plain.distill")
    train_prior(tiny_prior_spec(spec.model_path, dataset, work), lambda event: None)
    shutil.copy(spec.model_path, library / "kit.distill")
    return {"kit": "kit", "plain": "plain"}


def open_editor(page, server, model: str, sound: str = "good_00.wav") -> None:
    page.goto(f"{server.url}/models/{model}/edit?sound={sound}")
    page.locator("#editor[data-version='1']").wait_for()


def test_the_editor_says_silence_redraws_its_mel_and_plays_through_the_run_pages_players(
    page,
    server,
    models,
) -> None:
    open_editor(page, server, models["kit"])
    warning = page.locator("#edit-warning")
    assert warning.is_visible()
    assert "silence (under -60 dBFS" in warning.inner_text()
    assert page.locator("#editor").get_attribute("data-silent") == "1"

    # Both sounds in wavesurfer players (waveform and spectrogram), A/B in page order.
    players = page.locator("#editor .player")
    assert players.count() == 2
    wait_drawn(players)
    edited, original = page.locator("#edited"), page.locator("#original")
    assert player_of(edited).locator("button.ab").inner_text() == "A/B 1"
    assert player_of(original).locator("button.ab").inner_text() == "A/B 2"

    # A variation silent on every draw is drawn again, then kept and said so.
    page.locator("[data-action='variation']").click()
    page.locator("#editor[data-version='2']").wait_for()
    assert "on all 4 rounds" in warning.inner_text()

    # Deleting two steps: the mel picture is redrawn from the edited grid (4 mel frames
    # a step in the tiny model), and the edited player draws the new sound.
    page.locator("#editor[data-mel-version='2']").wait_for()  # the variation's picture
    steps = page.evaluate("distillEditor.codes()[0].length")
    width = page.evaluate("document.getElementById('edit-mel').naturalWidth")
    assert width == steps * 4
    page.evaluate("distillEditor.select(0, 1, 2)")
    page.locator("#grid").press("Delete")
    page.locator("#editor[data-mel-version='3']").wait_for()
    assert page.evaluate("document.getElementById('edit-mel').naturalWidth") == (steps - 2) * 4
    assert warning.inner_text() == page.locator("#editor").get_attribute("data-silent-message")
    redrawn = player_of(edited)
    redrawn.and_(page.locator(f"[data-sound='{edited.get_attribute('src')}']")).wait_for()
    wait_drawn(redrawn)

    # A/B at the same moment: from the edited sound (which played as the edit landed)
    # to the original.
    edited.evaluate("audio => audio.pause()")
    play(edited)
    player_of(original).locator("button.ab").click()
    page.wait_for_function("!document.getElementById('original').paused")
    assert edited.evaluate("audio => audio.paused")


def test_without_a_prior_the_editor_says_what_regenerate_needs(page, server, models) -> None:
    open_editor(page, server, models["plain"])
    for action in ("regenerate", "variation"):
        button = page.locator(f"[data-action='{action}']")
        assert button.is_disabled()
        assert button.get_attribute("aria-describedby") == "needs-prior"
    note = page.locator("#needs-prior")
    assert note.is_visible() and "need the model's prior" in note.inner_text()
    assert note.locator("a").get_attribute("href") == f"/models/{models['plain']}#prior"


def test_three_runs_compared_each_in_its_colour_with_values_on_hover(page, server) -> None:
    """Any number of runs of a type: three tiny VQ-VAEs, named by model, a colour each."""
    import httpx
    from helpers import tiny_run_request, write_good_sounds
    from waiting import wait_until

    base = server.settings.home.parent
    run_ids = []
    for seed, name in enumerate(("kicks", "snares", "hats")):
        folder = base / f"compare-{name}"
        write_good_sounds(folder, count=5, seed=seed)
        body = {**tiny_run_request(folder), "model_name": name}
        response = httpx.post(server.url + "/api/runs", json=body, trust_env=False)
        assert response.status_code == 201, response.text
        run_ids.append(response.json()["run_id"])

    def finished(run_id: str) -> bool:  # run_events' asyncio.run cannot run beside Playwright
        run = httpx.get(f"{server.url}/api/runs/{run_id}", trust_env=False).json()
        assert run["status"] in ("queued", "running", "completed"), run
        return run["status"] == "completed"

    for run_id in run_ids:
        wait_until(lambda run_id=run_id: finished(run_id), what=f"run {run_id} to complete")

    page.goto(f"{server.url}/runs")
    for run_id in run_ids:
        page.locator(f"input[name='compare'][value='{run_id}']").check()
    page.select_option("#smoothing", "0.6")
    page.locator("#compare-form button[type='submit']").click()
    page.locator("#overlay").wait_for()
    labels = page.locator("#overlay h2 a").all_inner_texts()  # in the list's order
    assert sorted(labels) == ["hats", "kicks", "snares"]
    colours = [
        page.locator(f"#overlay .compare-chart >> nth=0 >> .line.run{i}.val").evaluate(
            "line => getComputedStyle(line).stroke"
        )
        for i in range(3)
    ]
    assert len(set(colours)) == 3  # three runs, three colours
    swatch = page.locator("#overlay .compare-chart >> nth=0 >> .legend .key.run1.val").evaluate(
        "key => getComputedStyle(key, '::before').backgroundColor"
    )
    assert swatch == colours[1]  # the legend's swatch is its line's colour
    assert "smoothed 0.6" in page.locator("#overlay").inner_text()
    mark = page.locator("#overlay circle.mark.run2").first
    mark.hover()
    assert mark.evaluate("circle => getComputedStyle(circle).fill") == colours[2]
    assert mark.locator("title").text_content().startswith(f"{labels[2]} validation, epoch 1: ")
    shot(page, "runs-compare")


def test_a_sample_pack_picked_auditioned_on_pads_and_downloaded(
    page, server, models, tmp_path
) -> None:
    """From the model's page: two generated clips and a saved edit, heard on the pads by
    their keys, downloaded as one zip of WAVs at one level with its manifest."""
    import io
    import json
    import zipfile

    import numpy as np
    import soundfile as sf

    from distill.audio.dataset import PEAK_TARGET
    from distill.inference.codes import encode_file
    from distill.inference.generate import GenerateSpec, generate_clips
    from distill.inference.sample_pack import clip_mode
    from distill.models.history import edits_dir, new_out_dir
    from distill.models.library import load_vqvae
    from distill.server import helper
    from distill.server.editor_lane import wav_bytes

    home, model = server.settings.home, server.settings.home / "models" / "kit.distill"
    spec = GenerateSpec(model, new_out_dir("kit", home), seconds=0.5, count=2, seed=5)
    clips = generate_clips(spec).clips
    vqvae, _ = load_vqvae(model)
    sound = sorted(p for p in server.settings.home.parent.glob("*/good_00.wav"))[0]
    grid = encode_file(vqvae, "kit", sound).to_json()
    decoded = helper.edit_decode(str(model), grid, [], 0)  # one piece: a short sound
    assert decoded["chunks"] == 1
    wav = wav_bytes(decoded["pcm"], decoded["sample_rate"])
    assert "saved" in helper.edit_save(
        str(model), grid, str(edits_dir(home, "kit")), "pad-edit", wav
    )

    page.goto(f"{server.url}/models/kit")
    for clip in clips:
        page.locator(f"#pack input[name='clip'][value$='/{Path(clip.path).name}']").first.check()
    page.locator("#pack input[name='edit'][value='pad-edit']").check()
    pads = page.locator("#pads .pad")
    assert [pad.get_attribute("data-key") for pad in pads.all()] == ["q", "w", "e"]
    page.locator("body").press("w")  # the second pad: the clip of seed 6
    page.locator("#pads .pad[data-key='w'][data-played='1']").wait_for()
    assert page.locator("#pads .pad[data-key='q']").get_attribute("data-played") is None
    if TAKE_SCREENSHOTS:  # the README's, retaken only when asked
        page.locator("#pack").screenshot(path=str(SCREENSHOTS / "pack.png"))

    with page.expect_download() as info:
        page.locator("#pack-download").click()
    download = info.value
    assert download.suggested_filename == "kit-pack.zip"
    target = tmp_path / "kit-pack.zip"
    download.save_as(target)
    mode = clip_mode(clips[0].one_shot, clips[0].variation_of)
    with zipfile.ZipFile(target) as archive:
        names = sorted(archive.namelist())
        assert names == sorted(
            [f"kit_{mode}_seed5.wav", f"kit_{mode}_seed6.wav", "kit_edit_pad-edit.wav",
             "manifest.json"]
        )  # fmt: skip
        manifest = json.loads(archive.read("manifest.json"))
        for name in names[:-1] if names[-1] == "manifest.json" else names:
            if name.endswith(".wav"):
                audio, _ = sf.read(io.BytesIO(archive.read(name)))
                assert np.abs(audio).max() == pytest.approx(PEAK_TARGET, abs=1e-3)
    assert manifest["model_name"] == "kit"
    seeds = {s["file"]: (s["mode"], s["seed"]) for s in manifest["sounds"]}
    assert seeds[f"kit_{mode}_seed6.wav"] == (mode, 6)
    assert seeds["kit_edit_pad-edit.wav"] == ("edit", None)
