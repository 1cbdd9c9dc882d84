"""The dashboard in a real browser: Debian's Chromium driven by Playwright, a real server.

The dataset is six short generated sounds, about 3 s in all: about a hundred audible latent
vectors, under the 2 per code a 64-code codebook needs to be judged, so the page must say
"too few vectors" and raise no low-utilization warning.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    write_bad_sounds,
    write_good_sounds,
    write_preview_run,
)
from waiting import DEADLINE

from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings

SCREENSHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
# The README's screenshots are retaken only when asked: DISTILL_SCREENSHOTS=1 make test.
TAKE_SCREENSHOTS = os.environ.get("DISTILL_SCREENSHOTS", "") not in ("", "0")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make install)"),
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("browser") / "kicks"
    write_good_sounds(folder)
    write_bad_sounds(folder / "bad")
    return folder


@pytest.fixture(scope="module")
def server(dataset: Path, kit: dict):
    roots = (dataset.parent, kit["base"])  # the kit's sounds: the editor opens them
    settings = ServerSettings.for_host(dataset.parent / "data", "127.0.0.1", 0, allowed_roots=roots)
    with ServerThread(settings) as live:
        yield live


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server: ServerThread):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(DEADLINE * 1000)  # playwright counts milliseconds
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    yield page
    context.close()
    own = (server.url, server.ws_url, f"blob:{server.url}")  # blob: the editor's decoded sound
    outside = [url for url in requested if not url.startswith(own)]
    assert outside == [], f"requests left the machine: {outside}"


def shot(page, name: str) -> None:
    """The page as docs/screenshots/NAME.png, when DISTILL_SCREENSHOTS asks for it."""
    if not TAKE_SCREENSHOTS:
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def play(audio) -> str:
    """Press an audio player's play button (a user gesture, so the browser lets it play)
    and wait until it plays; returns what it plays. An error from the element fails the
    test."""
    audio.evaluate(
        """audio => { audio.started = new Promise((resolve, reject) => {
            audio.addEventListener("playing", () => resolve(audio.currentSrc), {once: true});
            audio.addEventListener("error", () => reject(new Error("audio error " + audio.error.code)));
        }); }"""
    )
    button = player_of(audio).locator("button.play")
    button.scroll_into_view_if_needed()
    button.click()
    return audio.evaluate("audio => audio.started")


def player_of(audio):
    """The player box players.js built around an <audio> element."""
    return audio.locator("xpath=..")


def wait_drawn(players) -> None:
    """Wait until each player has drawn its waveform and spectrogram (players.js sets
    data-ready), then check both pictures are there."""
    assert players.count() > 0
    for player in players.all():
        player.scroll_into_view_if_needed()  # a player loads its sound once in view
        player.and_(player.page.locator("[data-ready='1']")).wait_for()
        assert player.locator(".wave canvas").count() >= 1  # in wavesurfer's shadow root
        assert player.locator(".spectrogram canvas").count() >= 1


def test_train_from_the_form_watch_it_listen_and_find_the_model(
    page, server: ServerThread, dataset: Path
) -> None:
    # New run: scan a folder first, then the options.
    page.goto(server.url + "/new")
    assert page.locator("text=Fewer levels = faster, more levels = finer detail").count() == 1
    slider = page.locator("#rvq_levels")
    assert (slider.get_attribute("min"), slider.get_attribute("max")) == ("2", "4")
    assert page.input_value("#commitment_weight") == "0.25"
    assert page.is_disabled("#start")
    page.fill("#dataset-path", str(dataset))
    page.click("#scan-button")
    page.wait_for_selector("#scan-summary")
    assert "6</strong> usable files" in page.inner_html("#scan-summary")
    assert "silence.wav" in page.inner_text("#scan") and "silent" in page.inner_text("#scan")
    assert page.input_value("#codebook_size") == "64"  # chosen from 6 files, read-only
    assert page.get_attribute("#codebook_size", "readonly") is not None
    page.fill("#epochs", "2")
    assert page.input_value("#stage_steps") == "600"
    page.fill("#stage_steps", "20")  # a short decoder stage: the previews then play through it
    assert page.input_value("#patience") == "10"  # the VQ-VAE's default, 0 = off
    page.fill("#model_name", "browser-kicks")
    shot(page, "new-run")
    page.click("#start")
    page.wait_for_url("**/runs/*")
    run_id = page.url.rsplit("/", 1)[-1]

    # The run page fills in live: codebook tables, previews.
    page.wait_for_selector("#run-codebook table.health tbody tr")
    for split in ("train", "val"):  # the default 3 levels, on training and held-out files
        assert page.locator(f"#run-codebook table[data-split={split}] tbody tr").count() == 3
    assert "too few vectors" in page.inner_text("#run-codebook table[data-split=train]")
    shot(page, "run-live")
    page.wait_for_selector("#run-status[data-status=completed]")
    assert page.locator("#run-warnings li.warning").count() == 0  # not judged on so few
    assert page.locator("#run-chart polyline.val").count() == 1
    # Previews swapped in live are players with their waveform and spectrogram; the saved
    # model's come last, four sounds in the row: the model through its decoder stage too.
    clip = page.locator("#run-previews .clip").first
    clip.locator(".clip-row .player").nth(3).wait_for()
    assert clip.locator(".clip-row .player").count() == 4
    assert "model (Griffin-Lim)" in clip.inner_text() and "decoder stage" in clip.inner_text()
    wait_drawn(clip.locator(".clip-row .player"))
    players = clip.locator(".clip-row .player")
    tops = {round(players.nth(i).bounding_box()["y"]) for i in range(4)}
    assert len(tops) == 1, f"the row's players should line up side by side, at {tops}"
    preview = page.locator("#run-previews audio.reconstruction").first
    assert play(preview).endswith("model/clip1_levels_3.wav")
    levels = clip.locator(".levels audio")
    assert levels.count() == 3  # what levels 1, 1..2 and 1..3 sound like
    # The finished run sums itself up: time, epochs, best epoch, mel error, the stage.
    summary = page.inner_text("#run-summary")
    assert "total time" in summary and "2 of 2" in page.inner_text("#summary-epochs")
    assert "patience 10: never needed" in summary
    assert page.inner_text("#summary-best").startswith(("1: validation loss", "2: validation loss"))
    assert float(page.inner_text("#summary-mel-error").split()[0]) > 0
    assert "20 steps" in page.inner_text("#summary-stage") and "→" in summary
    assert page.inner_text("#summary-warnings") == "no warnings"
    shot(page, "run-finished")

    # Read back from SQLite, the finished page looks the same.
    codebook, warnings = page.inner_html("#run-codebook"), page.inner_html("#run-warnings")
    page.reload()
    assert page.inner_html("#run-codebook") == codebook
    assert page.inner_html("#run-warnings") == warnings

    # The model has its page, and is in the library.
    page.click("#model-link")
    page.wait_for_selector("#model-browser-kicks")
    card = page.inner_text("#model-browser-kicks")
    assert "3 RVQ levels × 64 codes" in card and run_id in card
    page.goto(server.url + "/models")
    page.wait_for_selector("#model-browser-kicks")
    shot(page, "models")

    page.goto(server.url + "/runs")
    page.wait_for_selector(f"text={run_id}")
    shot(page, "runs")
    page.goto(server.url + "/")
    shot(page, "dashboard")


def test_train_a_prior_and_generate_from_the_model_page(page, server: ServerThread) -> None:
    """Goes on from the model the test above trained (tests in a module run in order)."""
    page.goto(server.url + "/models/browser-kicks")
    assert "Generating needs a prior" in page.inner_text("#generate")
    for field, value in (("#prior-epochs", "3"), ("#hidden_size", "16"), ("#layers", "1"),
                         ("#heads", "2"), ("#generation_clips", "2")):  # fmt: skip
        page.fill(field, value)
    page.click("#train-prior")
    page.wait_for_url("**/runs/*")

    # The prior's run page fills in live: the epochs table and the perplexity chart.
    page.wait_for_selector("#run-prior table tbody tr")
    page.wait_for_selector("#run-status[data-status=completed]")
    assert page.locator("#run-prior tbody tr").count() == 3
    page.wait_for_selector("#run-measured dt")  # what its sounds measured, streamed in
    assert "varied" in page.inner_text("#run-measured")
    assert page.locator("#run-chart polyline.val").count() == 2  # perplexity, then loss
    assert page.locator("#run-chart polyline.threshold").count() == 1
    assert "%" in page.inner_text("#summary-copy-rate")
    shot(page, "prior-run")

    # Back on the model's page: generate, then play a clip and its nearest training stretch.
    page.click("#model-link")
    page.wait_for_selector("#generate-form")
    page.fill("#generate-form [name=seconds]", "1")
    page.fill("#generate-form [name=count]", "2")
    page.click("#generate-button")  # a generate run: its page shows the clips as written
    page.wait_for_selector("h1:has-text('Generate run')")
    page.wait_for_selector("#run-status[data-status=completed]")
    assert page.locator("#run-clips .generated-clip").count() == 2
    shot(page, "generate-run")
    page.click("#model-link")
    page.wait_for_selector("#generations .generated-clip .player")  # upgraded players
    clips = page.locator("#generations .generated-clip")
    assert clips.count() == 2 and page.locator(".generation.pending").count() == 0
    assert "longest run shared with training" in clips.first.inner_text()
    wait_drawn(clips.first.locator(".player"))  # the clip and its training stretch
    assert "keys 1–2" in page.inner_text("#generations .ab-hint")
    for audio in (clips.first.locator("audio").first, clips.first.locator("audio.match")):
        assert play(audio).endswith(".wav")
    page.reload()  # kept in the model's history
    assert page.locator("#generations .generated-clip").count() == 2
    shot(page, "model")


def test_a_prior_shows_its_time_left_and_stops_keeping_its_best_epoch(
    page, server: ServerThread
) -> None:
    """A long prior: its page estimates the time left; "Stop and keep the best epoch"
    ends it completed, with its best epoch so far saved into the model."""
    page.goto(server.url + "/models/browser-kicks")
    page.click("#new-prior summary")  # the model has a prior: the form is folded
    assert page.input_value("#prior-patience") == "5"  # the prior's default, 0 = off
    for field, value in (("#prior-epochs", "500"), ("#hidden_size", "16"), ("#layers", "1"),
                         ("#heads", "2"), ("#prior-patience", "0")):  # fmt: skip
        page.fill(field, value)
    page.click("#train-prior")
    page.wait_for_url("**/runs/*")
    run_id = page.url.rsplit("/", 1)[-1]
    page.wait_for_selector("#run-prior tbody tr:nth-child(2)")  # two epochs done
    assert "epochs: about" in page.inner_text("#run-eta") and "left" in page.inner_text("#run-eta")
    shot(page, "prior-run-live")
    page.click("#cancel-keep-best")
    page.wait_for_selector("#run-status[data-status=completed]")
    assert "stopped on request" in page.inner_text("#summary-stop")
    assert page.locator("#run-eta").count() == 0
    page.click("#model-link")
    assert run_id in page.inner_text("#prior")  # the model's prior is this run's best epoch


def switch(page, target, press) -> float:
    """`press()` (a key or a button), then wait until `target` plays; returns its position
    when it started."""
    target.evaluate(
        """audio => { audio.started = new Promise(resolve => audio.addEventListener(
            "playing", () => resolve(audio.currentTime), {once: true})); }"""
    )
    press()
    return target.evaluate("audio => audio.started")


def test_preview_rows_draw_every_sound_and_switch_between_them_at_the_same_moment(
    page, server: ServerThread
) -> None:
    write_preview_run(server, "decoder-stage", decoder_stage=True)
    write_preview_run(server, "griffin-lim-only", decoder_stage=False)

    page.goto(server.url + "/runs/decoder-stage")
    row = page.locator("#run-previews .clip-row").first
    captions = row.locator("figcaption").all_inner_texts()
    assert captions == [
        "original",
        "true mel through Griffin-Lim (the old ceiling)",
        "model (Griffin-Lim)",
        "model (decoder stage)",
    ]
    assert row.locator("audio.griffin-lim").get_attribute("src").endswith("clip1_griffin_lim.wav")
    assert row.locator("audio.reconstruction").get_attribute("src").endswith("clip1_model.wav")
    assert page.locator("#run-previews .clip img").count() == 2  # the mel PNGs stay
    wait_drawn(row.locator(".player"))
    wait_drawn(page.locator("#run-previews .levels .player"))
    assert "keys 1–4" in page.inner_text("#run-previews .ab-hint")

    # A/B: the original plays from 1 s; key 3 moves playback to the model through
    # Griffin-Lim at the same moment, then its A/B button moves it to the decoder stage.
    audios = row.locator("audio")
    original, griffin_lim, decoder = audios.nth(0), audios.nth(2), audios.nth(3)
    play(original)
    original.evaluate(
        """audio => new Promise(resolve => {
            audio.addEventListener("seeked", resolve, {once: true});
            audio.currentTime = 1.0;
        })"""
    )
    started = switch(page, griffin_lim, lambda: page.keyboard.press("3"))
    left = original.evaluate("audio => [audio.paused, audio.currentTime]")
    assert left[0] is True and left[1] >= 1.0
    assert abs(started - left[1]) < 0.1  # a position tolerance: the same moment of the sound
    ab = player_of(decoder).locator("button.ab")
    assert ab.inner_text() == "A/B 4"
    started = switch(page, decoder, ab.click)
    left = griffin_lim.evaluate("audio => [audio.paused, audio.currentTime]")
    assert left[0] is True and left[1] >= 1.0
    assert abs(started - left[1]) < 0.1
    assert ab.get_attribute("aria-pressed") == "true"
    decoder.evaluate("audio => audio.pause()")

    # Without a decoder stage, three sounds: the model's rendering is Griffin-Lim.
    page.goto(server.url + "/runs/griffin-lim-only")
    row = page.locator("#run-previews .clip-row").first
    assert row.locator("figcaption").all_inner_texts() == [
        "original",
        "true mel through Griffin-Lim (the old ceiling)",
        "model (Griffin-Lim)",
    ]
    assert row.locator("audio.griffin-lim").count() == 0
    wait_drawn(row.locator(".player"))


def test_without_javascript_the_players_are_plain_audio_elements(browser, server) -> None:
    write_preview_run(server, "no-script", decoder_stage=True)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(server.url + "/runs/no-script")
        row = page.locator("#run-previews .clip-row").first
        assert row.locator("audio[controls]:not([hidden])").count() == 4
        assert page.locator(".player").count() == 0
        assert page.locator(".ab-hint").is_hidden()  # no A/B without the script
    finally:
        context.close()


@pytest.fixture(scope="module")
def edit_model(server: ServerThread, kit: dict) -> str:
    """A tiny model with a prior (the session's kit, its sounds in an allowed root), in the
    server's library."""
    import shutil

    from distill.paths import models_dir

    shutil.copy(kit["model"], models_dir(server.settings.home) / "kit-edit.distill")
    return "kit-edit"


def editor_state(page, version: int) -> dict:
    """Wait until the editor has decoded `version` edits' worth, then read it."""
    page.locator(f"#editor[data-version='{version}']").wait_for()
    return page.evaluate(
        "async () => ({codes: distillEditor.codes(), wav: await distillEditor.wavDigest()})"
    )


def test_the_code_editor_edits_plays_regenerates_undoes_and_saves(page, server, edit_model) -> None:
    page.goto(f"{server.url}/models/{edit_model}")
    page.locator("#edit-link").click()
    page.locator(".edit-sources a", has_text="good_00").click()
    opened = editor_state(page, 1)
    levels, steps = len(opened["codes"]), len(opened["codes"][0])
    assert levels == 2 and steps > 4
    assert page.locator("#grid .cell").count() == levels * steps
    assert page.locator("#edit-mel").bounding_box()["width"] == pytest.approx(steps * 10, abs=1)

    # One cell set to another code from the palette: the sound changes.
    page.locator("#grid .cell[data-level='0'][data-step='2']").click()
    current = opened["codes"][0][2]
    page.locator(f"#palette button[data-code='{(current + 1) % 8}']").click()
    changed = editor_state(page, 2)
    assert changed["codes"][0][2] == (current + 1) % 8 and changed["wav"] != opened["wav"]
    shot(page, "editor")

    # Undo brings back exactly the original sound; keys work on the focused grid.
    page.locator("#grid").press("z")
    assert editor_state(page, 3) == opened
    page.locator("#grid").press("ArrowRight")
    assert page.locator("#grid .cell.cursor").get_attribute("data-step") == "3"

    # Regenerating a range with a seed twice gives the same codes.
    page.evaluate("distillEditor.select(0, 1, 3)")
    page.fill("#seed", "5")
    page.locator("[data-action='regenerate']").click()
    first = editor_state(page, 4)
    page.locator("[data-action='undo']").click()
    editor_state(page, 5)
    page.locator("[data-action='regenerate']").click()
    second = editor_state(page, 6)
    assert first["codes"] == second["codes"]
    assert [row[:1] + row[4:] for row in first["codes"]] == [
        row[:1] + row[4:] for row in opened["codes"]
    ]  # only steps 1-3 were drawn anew

    # Saved into the model's edits, it reopens with its codes.
    page.fill("#save-name", "edited-kick")
    page.locator("[data-action='save']").click()
    page.locator("#editor[data-saved='edited-kick']").wait_for()
    page.goto(f"{server.url}/models/{edit_model}")  # in the model's history
    page.locator("#edits a", has_text="edited-kick").click()
    assert editor_state(page, 1)["codes"] == second["codes"]


def test_the_editor_opens_a_sound_uploaded_from_the_users_machine(
    page, server, edit_model, dataset
) -> None:
    page.goto(f"{server.url}/models/{edit_model}/edit")
    page.set_input_files("input[name='sound']", str(dataset / "good_01.flac"))
    page.locator("#upload-edit").click()
    opened = editor_state(page, 1)
    assert len(opened["codes"]) == 2 and "good_01.flac" in page.locator("#editor").inner_text()
    page.goto(f"{server.url}/models/{edit_model}/edit")
    page.set_input_files("input[name='sound']", str(dataset / "bad" / "notes.txt"))
    page.locator("#upload-edit").click()
    assert "notes.txt" in page.locator("#edit-error").inner_text()
