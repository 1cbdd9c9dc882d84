"""Pages and the model library over HTTP, on a real server with two tiny finished runs."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from helpers import page_client, run_events, tiny_run_request, write_good_sounds

from distill.core.store import Store
from distill.paths import database_path
from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings
from distill.server.views import RUNS_PER_PAGE

pytestmark = pytest.mark.slow

PROXIED_HOST = "studio.example"  # the name an HTTPS reverse proxy serves the dashboard under
# The attributes a page links through: each must hold a path, never an absolute URL.
LINK = re.compile(r'\b(href|src|action|hx-(?:get|post)|data-live)="([^"]*)"')


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("pages")
    kicks, snares = base / "kicks", base / "snares"
    write_good_sounds(kicks, count=5, seed=1)
    write_good_sounds(snares, count=5, seed=2)
    settings = ServerSettings.for_host(
        base / "home",
        "127.0.0.1",
        0,
        allowed_hosts=(PROXIED_HOST,),
        allowed_roots=(base,),
        max_model_upload_bytes=5_000_000,
    )
    with ServerThread(settings) as server:
        runs = {}
        for name, folder in (("kicks", kicks), ("snares", snares)):
            body = {**tiny_run_request(folder), "model_name": name}
            response = httpx.post(server.url + "/api/runs", json=body, trust_env=False)
            assert response.status_code == 201, response.text
            runs[name] = response.json()["run_id"]
        for run_id in runs.values():
            run_events(server, run_id)
        yield {"server": server, "runs": runs, "kicks": kicks, "snares": snares}


def test_runs_list_filters_by_status_and_dataset(world) -> None:
    with page_client(world["server"]) as http:
        page = http.get("/runs").text
        assert world["runs"]["kicks"] in page and world["runs"]["snares"] in page
        only_kicks = http.get("/runs", params={"dataset": str(world["kicks"])}).text
        assert world["runs"]["kicks"] in only_kicks and world["runs"]["snares"] not in only_kicks
        failed = http.get("/runs", params={"status": "failed"}).text
        assert world["runs"]["kicks"] not in failed and "No runs match" in failed
        assert http.get("/runs", params={"status": "exploded"}).status_code == 400


def test_two_runs_curves_overlay(world) -> None:
    kicks, snares = world["runs"]["kicks"], world["runs"]["snares"]
    with page_client(world["server"]) as http:
        page = http.get("/runs", params=[("compare", kicks), ("compare", snares)]).text
    assert f"Comparing {kicks} and {snares}" in page
    assert page.count('class="line run0 val"') == 1 and page.count('class="line run1 val"') == 1


def test_runs_list_pages_through_older_runs(tmp_path) -> None:
    async def make_runs(count: int) -> None:
        store = await Store.open(database_path(tmp_path / "home"))
        try:
            for index in range(count):
                await store.create_run(f"run-{index:03d}", "vqvae", "/sounds/a", {})
        finally:
            await store.close()

    asyncio.run(make_runs(RUNS_PER_PAGE + 20))
    settings = ServerSettings.for_host(tmp_path / "home", "127.0.0.1", 0)
    with (
        ServerThread(settings) as server,
        httpx.Client(base_url=server.url, trust_env=False) as http,
    ):
        first = http.get("/runs", params={"dataset": "/sounds/a"}).text
        assert first.count('<a href="/runs/run-') == RUNS_PER_PAGE
        assert f"runs 1 to {RUNS_PER_PAGE}" in first and "Newer runs" not in first
        older = re.search(r'<a href="([^"]+)" rel="next">Older runs', first).group(1)
        assert older == "/runs?page=2&amp;dataset=%2Fsounds%2Fa"  # keeps the filter
        second = http.get(older.replace("&amp;", "&")).text
        assert second.count('<a href="/runs/run-') == 20 and "Older runs" not in second
        assert 'rel="prev">&larr; Newer runs' in second
        assert http.get("/runs", params={"page": "0"}).status_code == 400
        assert "No runs match" in http.get("/runs", params={"page": "9"}).text


def test_finished_run_page_is_read_from_sqlite(world) -> None:
    run_id = world["runs"]["kicks"]
    with page_client(world["server"]) as http:
        page = http.get(f"/runs/{run_id}").text
    assert 'data-status="completed"' in page
    assert "data-live=" not in page  # nothing left to stream
    # Two levels, counted on the training files and on the held-out files.
    for split in ("train", "val"):
        table = page.split(f'data-split="{split}"', 1)[1].split("</table>", 1)[0]
        assert table.count("<tr class=") == 2
    assert "clip1_levels_2.wav" in page
    assert 'class="line val"' in page and 'class="line commit"' in page


def test_tables_say_which_files_they_count_and_a_finished_run_sums_up(world) -> None:
    """Every codebook table names its files and the unit of its error reduction; a
    finished run's page has its summary; no chart of a positive quantity ticks below 0."""
    run_id = world["runs"]["kicks"]
    with page_client(world["server"]) as http:
        page = http.get(f"/runs/{run_id}").text
        model = http.get("/models/kicks").text
        runs = http.get("/runs").text
    assert "counted on the training files" in page and "counted on the held-out files" in page
    assert "error reduction (log-mel L1, held-out)" in page
    model_table = model.split('class="health"', 1)[1].split("</table>", 1)[0]
    assert 'data-split="val"' in model and "counted on the held-out files" in model_table
    assert "worst level (training files)" in runs
    summary = page.split('id="run-summary"', 1)[1].split("</section>", 1)[0]
    for words in ("total time", "best epoch", "held-out mel error", "decoder stage"):
        assert words in summary, words
    warnings = page.split('id="run-warnings"', 1)[1].split("</section>", 1)[0]
    count = warnings.count('<li class="warning">')
    assert (f"{count} warning(s)" if count else "no warnings") in summary, warnings
    ticks = re.findall(r'class="tick"[^>]*>(-?[0-9.e+-]+)</text>', page + model)
    assert ticks and all(not tick.startswith("-") for tick in ticks), ticks
    icon = re.search(r'<link rel="icon"[^>]*href="([^"]+)"', page)
    assert icon is not None  # so a browser asks for no /favicon.ico (a 404 on every page)
    with page_client(world["server"]) as http:
        assert http.get(icon.group(1)).status_code == 200


def test_unknown_run_page_is_404(world) -> None:
    with page_client(world["server"]) as http:
        response = http.get("/runs/nope")
    assert response.status_code == 404 and "no run" in response.text


def test_new_run_form_errors_are_shown(world) -> None:
    with page_client(world["server"]) as http:
        response = http.post("/runs", data={"dataset": str(world["kicks"]), "rvq_levels": "7"})
    assert response.status_code == 400
    assert "RVQ levels must be 2 to 4" in response.text


def test_library_download_rename_import_delete(world) -> None:
    with page_client(world["server"]) as http:
        library = http.get("/models").text
        assert 'id="model-kicks"' in library and 'id="model-snares"' in library
        download = http.get("/models/kicks/download")
        assert download.status_code == 200
        assert download.content.startswith(b"DISTILL\0")
        assert "kicks.distill" in download.headers["content-disposition"]

        renamed = http.post("/models/kicks/rename", data={"new_name": "kicks-v2"})
        assert renamed.status_code == 303
        assert http.get("/models/kicks/download").status_code == 404
        run = http.get(f"/api/runs/{world['runs']['kicks']}").json()
        assert run["model_name"] == "kicks-v2"  # the run follows its model
        taken = http.post("/models/snares/rename", data={"new_name": "kicks-v2"})
        assert taken.status_code == 400 and "already in the library" in taken.text
        bad = http.post("/models/snares/rename", data={"new_name": "../x"})
        assert bad.status_code == 400 and "bad model name" in bad.text

        imported = http.post(
            "/models/import",
            files={"file": ("mine.distill", download.content, "application/octet-stream")},
            data={"name": "imported"},
        )
        assert imported.status_code == 303
        assert 'id="model-imported"' in http.get("/models").text
        garbage = http.post(
            "/models/import",
            files={"file": ("x.distill", b"not a model", "application/octet-stream")},
        )
        assert garbage.status_code == 400 and "not imported" in garbage.text
        huge = http.post(
            "/models/import",
            files={"file": ("x.distill", b"\0" * 6_000_000, "application/octet-stream")},
        )
        assert huge.status_code == 413 and "larger than this server accepts" in huge.text

        assert http.post("/models/imported/delete").status_code == 303
        assert 'id="model-imported"' not in http.get("/models").text
        assert http.post("/models/imported/delete").status_code == 404


def test_home_lists_recent_runs_and_models(world) -> None:
    with page_client(world["server"]) as http:
        page = http.get("/").text
    assert world["runs"]["snares"] in page
    assert "snares" in page and 'data-live="/ws/dashboard"' in page


def test_pages_use_only_our_own_static_files(world) -> None:
    with page_client(world["server"]) as http:
        page = http.get("/new").text
        assert "/static/vendor/htmx.min.js" in page
        htmx = http.get("/static/vendor/htmx.min.js")
        players = {
            name: http.get(f"/static/{name}")
            for name in (
                "vendor/wavesurfer.min.js",
                "vendor/wavesurfer-spectrogram.min.js",
                "players.js",
            )
        }
    assert htmx.status_code == 200 and "htmx" in htmx.text
    for name, response in players.items():
        assert f"/static/{name}" in page
        assert response.status_code == 200 and "WaveSurfer" in response.text, name
    assert "https://" not in page and "cdn" not in page.lower()


def test_pages_link_by_path_behind_an_https_proxy(world) -> None:
    """Through an HTTPS proxy (the Procfile deployment) the Host is the proxy's name and
    X-Forwarded-Proto says https; an absolute http:// link built from them would be mixed
    content, and the browser would drop the page's styles and scripts."""
    kicks = world["runs"]["kicks"]
    proxied = {
        "Host": PROXIED_HOST,
        "X-Forwarded-Proto": "https",
        "Origin": f"https://{PROXIED_HOST}",
    }
    paths = ["/", "/new", "/runs", f"/runs/{kicks}", "/models", "/models/snares", "/runs/nope"]
    with httpx.Client(base_url=world["server"].url, headers=proxied, trust_env=False) as http:
        pages = {path: http.get(path) for path in paths}
        renamed = http.post("/models/snares/rename", data={"new_name": "snares-proxied"})
        back = http.post("/models/snares-proxied/rename", data={"new_name": "snares"})
    for path, response in pages.items():
        assert response.status_code == (404 if path == "/runs/nope" else 200), path
        page = response.text
        assert "http://" not in page and "https://" not in page and PROXIED_HOST not in page
        links = LINK.findall(page)
        assert ("href", "/static/distill.css") in links, path  # the styles still load
        for attribute, value in links:
            assert value.startswith(("/", "#")), (path, attribute, value)
    assert 'data-live="/ws/dashboard"' in pages["/"].text  # live.js picks ws: or wss: itself
    for response in (renamed, back):
        assert response.status_code == 303 and response.headers["location"] == "/models"
