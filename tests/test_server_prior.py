"""The prior in the dashboard, on a real server: train one from a model's page, watch its
run page (perplexity, epochs, memorization warnings), generate from the page and play
the clips beside their nearest training stretch."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import soundfile as sf
from helpers import page_client, run_events, tiny_run_request, write_good_sounds

from distill.audio.synth import chirp
from distill.inference.generate import GenerateSpec, generate_clips
from distill.models.history import new_out_dir
from distill.paths import CANCEL_FILE
from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings

pytestmark = pytest.mark.slow
TINY_PRIOR_FORM = {
    "epochs": "2", "hidden_size": "16", "layers": "1", "heads": "2", "generation_clips": "2",
}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("prior-pages")
    kicks, one = base / "kicks", base / "one"
    write_good_sounds(kicks, count=5, seed=1)
    one.mkdir()
    sf.write(one / "chirp.wav", chirp(200, 2000, 0.8, 8000), 8000)
    settings = ServerSettings.for_host(base / "home", "127.0.0.1", 0, allowed_roots=(base,))
    with ServerThread(settings) as server:
        runs = {}
        for name, folder in (("kicks", kicks), ("one", one)):
            body = {**tiny_run_request(folder), "model_name": name}
            response = httpx.post(server.url + "/api/runs", json=body, trust_env=False)
            assert response.status_code == 201, response.text
            runs[name] = response.json()["run_id"]
            run_events(server, runs[name])
        yield {"server": server, "home": base / "home", "base": base, "runs": runs}


def test_train_a_prior_from_the_model_page_then_generate(world) -> None:
    with page_client(world["server"]) as http:
        page = http.get("/models/kicks").text
        assert 'id="prior-form"' in page and "Generating needs a prior" in page
        assert 'placeholder="auto: 128"' in page  # sized from the model's 5 files

        started = http.post("/models/kicks/prior", data=TINY_PRIOR_FORM)
        assert started.status_code == 303
        run_id = started.headers["location"].rsplit("/", 1)[-1]
        kinds = [e["kind"] for e in run_events(world["server"], run_id)]
        assert kinds[-1] == "run_completed" and kinds.count("prior_epoch_metrics") == 2

        run_page = http.get(f"/runs/{run_id}").text
        assert "Prior run" in run_page and "Validation perplexity" in run_page
        assert 'class="line val"' in run_page and 'class="line threshold"' in run_page
        assert run_page.count("<tr class=") == 2  # one row per epoch in the prior's table
        assert "(best)" in run_page and "Codebook health" not in run_page
        assert "training codes" in run_page  # what the codes section says
        assert 'href="/models/kicks"' in run_page and "prior saved into model" in run_page

        model_page = http.get("/models/kicks").text
        assert f'href="/runs/{run_id}"' in model_page and 'id="generate-form"' in model_page
        assert "Nothing generated yet" in model_page

        # The runs list overlays two priors' curves, and refuses a prior beside a VQ-VAE.
        overlay = http.get("/runs", params=[("compare", run_id)]).text
        assert f"Comparing {run_id}" in overlay and overlay.count('class="line run0 val"') == 1
        mixed = http.get("/runs", params=[("compare", run_id), ("compare", world["runs"]["kicks"])])
        assert 'id="compare-error"' in mixed.text and 'id="overlay"' not in mixed.text

        form = {"seconds": "0.5", "count": "2", "seed": "3", "temperature": "1", "top_k": "0",
                "top_p": "1"}  # fmt: skip
        made = generate_through_htmx(http, "kicks", form, world["server"])
        sources = re.findall(r'<audio[^>]*src="([^"]+)"', made.text)
        clips = [s for s in sources if not s.endswith("_match.wav")]
        matches = [s for s in sources if s.endswith("_match.wav")]
        assert [s.rsplit("/", 1)[-1] for s in clips] == ["clip01_seed3.wav", "clip02_seed4.wav"]
        assert len(matches) == 2  # each clip beside its nearest training stretch
        for source in sources:
            wav = http.get(source)
            assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
        assert "longest run shared with training" in made.text
        assert "nearest training clip: " in made.text

        # Kept in the model's history; a plain form post lands back on the page.
        again = http.post("/models/kicks/generate", data={**form, "count": "1"})
        assert again.status_code == 303 and "/runs/" in again.headers["location"]
        run_events(world["server"], again.headers["location"].rsplit("/", 1)[-1])
        history = http.get("/models/kicks").text
        assert history.count('class="generation"') == 2


def generate_through_htmx(http: httpx.Client, model: str, form: dict, server) -> httpx.Response:
    """As the page does: post, follow htmx to the generate run's page, wait for the run's
    end, then read the model's page with its history."""
    started = http.post(f"/models/{model}/generate", data=form, headers={"HX-Request": "true"})
    assert started.status_code == 204, started.text
    run_url = started.headers["HX-Redirect"]
    assert re.fullmatch(r"/runs/[0-9a-f-]+", run_url)
    pending = http.get(f"/models/{model}").text
    run_id = run_url.rsplit("/", 1)[-1]
    assert run_id in pending or "Nothing generated yet" not in pending  # listed, or done
    kinds = [e["kind"] for e in run_events(server, run_id)]
    assert kinds[-1] == "run_completed" and "clip_generated" in kinds
    run_page = http.get(run_url).text
    assert "Generate run" in run_page and "clip01_seed" in run_page
    return http.get(f"/models/{model}")


def test_a_generate_run_can_be_cancelled(world) -> None:
    """Cancelled through the core, it ends cancelled (or completed, had it already ended);
    whatever it wrote stays in the history; and a run stopped after its first clip says
    it stopped early."""
    home, server = world["home"], world["server"]
    body = {**tiny_run_request(world["base"] / "kicks"), "model_name": "drums"}
    made = httpx.post(server.url + "/api/runs", json=body, trust_env=False)
    run_events(server, made.json()["run_id"])
    with page_client(world["server"]) as http:
        trained = http.post("/models/drums/prior", data=TINY_PRIOR_FORM)
        assert trained.status_code == 303
        run_events(server, trained.headers["location"].rsplit("/", 1)[-1])
        form = {"seconds": "0.5", "count": "8", "seed": "0"}
        started = http.post("/models/drums/generate", data=form)
        assert started.status_code == 303
        run_id = started.headers["location"].rsplit("/", 1)[-1]
        assert http.post(f"/runs/{run_id}/cancel").status_code == 303
        kinds = [e["kind"] for e in run_events(server, run_id)]
        assert kinds[-1] in ("run_cancelled", "run_completed")
        run = http.get(f"/api/runs/{run_id}").json()
        assert run["status"] == kinds[-1].removeprefix("run_")
        assert run["run_type"] == "generate" and run["model_name"] == "drums"
    leftovers = [p.name for p in (home / "generated" / "drums").rglob("*")]
    assert CANCEL_FILE not in leftovers

    # Stopped after its first clip (deterministically, without the race): the history
    # keeps that clip and says the request stopped early.
    path = str(home / "models" / "drums.distill")
    written: list[int] = []
    spec = GenerateSpec(Path(path), new_out_dir("drums", home), seconds=0.5, count=3)
    generate_clips(spec, lambda clip: written.append(clip.index), lambda: len(written) >= 1)
    with page_client(world["server"]) as http:
        page = http.get("/models/drums").text
    # the header gives the clips' own length (a one-shot clip's is where it decayed)
    assert "1 of 3 clip(s) of 0.50 s</span>, stopped early" in page
    assert "clip01_seed0.wav" in page


def test_bad_prior_and_generate_forms_say_why(world) -> None:
    with page_client(world["server"]) as http:
        refused = http.post("/models/kicks/prior", data={**TINY_PRIOR_FORM, "heads": "3"})
        assert (
            refused.status_code == 400 and "heads (3) must divide the hidden size" in refused.text
        )
        no_clips = http.post(
            "/models/kicks/prior", data={**TINY_PRIOR_FORM, "generation_clips": "0"}
        )
        assert no_clips.status_code == 400 and "clips to measure must be" in no_clips.text
        assert 'value="3"' in refused.text  # the form keeps what was typed
        for field, value, why in (("top_p", "2", "top-p must be"), ("seconds", "x", "seconds must be"),
                                  ("count", "99", "count must be")):  # fmt: skip
            response = http.post("/models/kicks/generate", data={field: value},
                                 headers={"HX-Request": "true"})  # fmt: skip
            assert response.status_code == 400 and why in response.text
        no_prior = http.post("/models/one/generate", data={}, headers={"HX-Request": "true"})
        assert no_prior.status_code == 400 and "no prior yet" in no_prior.text
        assert http.post("/models/nope/prior", data=TINY_PRIOR_FORM).status_code == 404
        assert http.get("/models/nope").status_code == 404


def test_generated_files_stay_in_the_models_history(world) -> None:
    home = world["home"]
    (home / "secret.wav").write_bytes(b"RIFF")
    with page_client(world["server"]) as http:
        for path in ("../../secret.wav", "..%2F..%2Fsecret.wav", "x/../../../secret.wav",
                     "manifest.json", "%2e%2e/%2e%2e/secret.wav"):  # fmt: skip
            assert http.get(f"/models/kicks/generated/{path}").status_code == 404, path


def test_the_api_trains_priors_on_library_models_only(world) -> None:
    with page_client(world["server"]) as http:
        outside = http.post("/api/priors", json={"model": str(world["base"] / "x.distill")})
        assert outside.status_code == 400 and "not in this server's model library" in outside.text
        unknown = http.post("/api/priors", json={"model": "kicks", "epochs": 3})
        assert unknown.status_code == 400 and "unknown fields: epochs" in unknown.text
        missing = http.post("/api/priors", json={"model": "nope"})
        assert missing.status_code == 409 and "nope" in missing.text


def test_a_memorizing_prior_is_flagged_on_its_run_and_model_pages(world) -> None:
    """One file is all the prior sees, in training and validation: it learns it by heart."""
    body = {
        "model": "one",
        "settings": {
            "epochs": 25,
            "learning_rate": 3e-3,
            "batch_size": 4,
            "min_steps_per_epoch": 8,
            "generation_clips": 2,
            "augment": False,  # its one file alone, trained past its best
            "patience": 0,
        },  # fmt: skip
        "overrides": {"hidden_size": 32, "layers": 1, "heads": 2, "dropout": 0.0},
    }
    with page_client(world["server"]) as http:
        response = http.post("/api/priors", json=body)
        assert response.status_code == 201, response.text
        run_id = response.json()["run_id"]
        kinds = [e["kind"] for e in run_events(world["server"], run_id)]
        assert "memorization_warning" in kinds and kinds[-1] == "run_completed"
        run_page = http.get(f"/runs/{run_id}").text
        assert 'class="warning"' in run_page and "replaying" in run_page
        model_page = http.get("/models/one").text
        assert model_page.count('id="prior-memorizes"') == 1
        # what its generated sounds measured, in the same words on both pages
        assert 'id="run-measured"' in run_page and 'id="prior-measured"' in model_page
        for page in (run_page, model_page):
            assert "<dt>plausible</dt>" in page and "<dt>varied</dt>" in page
            assert "2 clips generated from the kept prior" in page
