"""Nothing lost, nothing overwritten (issue 27), through a real server and the real CLI:
concurrent generate requests each keep their clips and their history entry, a model name
is held by the run that will make it, a saved edit is not replaced without asking, a
full disk at submission is a clear 507 that leaves nothing behind, and what a killed
process or a refused upload left is cleaned up."""

from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from commands import distill
from helpers import page_client, run_events, tiny_run_request, write_good_sounds
from waiting import wait_until

from distill.files import DiskFullError
from distill.models.history import generation_history
from distill.paths import models_dir, runs_dir
from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(library_server) -> dict:
    return library_server


def test_thirty_concurrent_generate_requests_keep_thirty_history_entries(world) -> None:
    """30 requests at once (in the same second or two: they shared one folder, and the
    history kept 2 entries) are 30 generate runs, each with a folder of its own, each
    listed among the runs, and each keeps its entry in the model's history."""
    origin = f"http://127.0.0.1:{world['server'].info.port}"
    form = {"seconds": "0.1", "count": "1", "mode": "continuous"}
    headers = {"Origin": origin, "HX-Request": "true"}

    def generate(_: int) -> str:
        response = httpx.post(world["server"].url + "/models/kit/generate", data=form,
                              trust_env=False, headers=headers, timeout=60)  # fmt: skip
        assert response.status_code == 204, response.text
        return response.headers["HX-Redirect"].rsplit("/", 1)[-1]

    before = {entry["folder"] for entry in generation_history("kit", world["home"])}
    with ThreadPoolExecutor(30) as pool:
        run_ids = set(pool.map(generate, range(30)))
    assert len(run_ids) == 30
    folders = set()
    for run_id in run_ids:
        events = run_events(world["server"], run_id)
        assert events[-1]["kind"] == "run_completed"
        folders.add(Path(events[0]["payload"]["config"]["out_dir"]).name)
    assert len(folders) == 30  # thirty distinct folders, each made when its request came
    history = {entry["folder"]: entry for entry in generation_history("kit", world["home"])}
    new = set(history) - before
    assert new == folders and all(len(history[g]["clips"]) == 1 for g in new)
    with page_client(world["server"]) as http:
        listed = http.get("/api/runs").json()
    generate_runs = {run["run_id"] for run in listed if run["run_type"] == "generate"}
    assert run_ids <= generate_runs


def test_a_model_name_is_held_by_the_run_that_will_make_it(world) -> None:
    body = {**tiny_run_request(world["sounds"], epochs=1000), "model_name": "twin"}
    with page_client(world["server"]) as http:
        first = http.post("/api/runs", json=body)
        assert first.status_code == 201, first.text
        holder = first.json()["run_id"]
        try:
            second = http.post("/api/runs", json=body)
            assert second.status_code == 409 and holder in second.json()["error"]
            form = http.post("/runs", data={"dataset": str(world["sounds"]), "model_name": "twin"})
            assert form.status_code == 409 and holder in form.text
            cli = distill(world["home"], "train", str(world["sounds"]), "--model-name", "twin",
                          "--no-follow")  # fmt: skip
            assert cli.returncode == 2 and holder in cli.stdout, cli.stdout + cli.stderr
        finally:
            assert http.post(f"/api/runs/{holder}/cancel").status_code == 202


def test_saving_an_edit_under_a_name_in_use_asks_first(world) -> None:
    with page_client(world["server"]) as http:
        body = {"grid": world["grid"], "name": "twice"}
        assert http.post("/models/kit/edit/save", json=body).status_code == 200
        edits = world["home"] / "generated" / "kit" / "edits"
        kept = (edits / "twice.codes.json").stat().st_mtime_ns
        again = http.post("/models/kit/edit/save", json=body)
        assert again.status_code == 409 and again.json()["exists"] is True
        assert "twice" in again.json()["error"]
        assert (edits / "twice.codes.json").stat().st_mtime_ns == kept  # untouched
        replaced = http.post("/models/kit/edit/save", json={**body, "overwrite": True})
        assert replaced.status_code == 200


def test_a_refused_upload_is_not_kept(world) -> None:
    uploads = world["home"] / "uploads"
    before = set(uploads.iterdir()) if uploads.exists() else set()
    with page_client(world["server"]) as http:
        files = {"sound": ("notes.wav", b"not audio at all", "audio/wav")}
        sent = http.post("/models/kit/edit/upload", files=files)
        assert sent.status_code == 303
        opened = http.get(sent.headers["location"])
        assert opened.status_code == 400 and "notes.wav" in opened.text
        scanned = http.post("/new/upload", files={"files": ("notes.wav", b"nope", "audio/wav")})
        assert scanned.status_code == 400
    assert set(uploads.iterdir()) == before


def test_stale_temporary_files_in_the_library_are_removed_at_start(tmp_path: Path) -> None:
    models = models_dir(tmp_path / "home")
    stale = models / ".kit.distill.0123456789abcdef.tmp"
    fresh = models / ".new.distill.fedcba9876543210.tmp"  # a write under way elsewhere
    stale.write_bytes(b"")
    fresh.write_bytes(b"")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    settings = ServerSettings.for_host(tmp_path / "home", "127.0.0.1", 0)
    with ServerThread(settings):
        assert not stale.exists() and fresh.exists()


def test_a_full_disk_at_submission_is_a_507_and_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(home)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {mounted.stderr}")
    try:
        sounds = tmp_path / "sounds"
        write_good_sounds(sounds, count=2)
        settings = ServerSettings.for_host(home, "127.0.0.1", 0, allowed_roots=(tmp_path,))
        with ServerThread(settings) as server:
            with open(home / "filler", "wb") as filler:  # every byte the disk has left
                try:
                    while True:
                        filler.write(b"\0" * 65536)
                        filler.flush()
                except OSError:
                    pass
            runs_before = sorted(runs_dir(home).iterdir())
            response = httpx.post(server.url + "/api/runs", json=tiny_run_request(sounds),
                                  trust_env=False)  # fmt: skip
            assert response.status_code == 507, response.text
            # files.DiskFullError's words, naming a path under the full disk
            said = str(DiskFullError(home)).removesuffix(")")
            assert response.json()["error"].startswith(said), response.text
            assert sorted(runs_dir(home).iterdir()) == runs_before  # no empty run folder
            cli = distill(home, "train", str(sounds), "--no-follow")
            assert cli.returncode == 2 and "the disk is full" in cli.stdout, cli.stdout
            assert "Traceback" not in cli.stdout + cli.stderr
            (home / "filler").unlink()
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def _children(pid: int) -> set[int]:
    """The pids whose parent is `pid`, from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def test_the_helper_ends_when_its_server_is_killed(tmp_path: Path) -> None:
    from commands import DISTILL, command_env

    from distill.server.discovery import read_server_file

    sounds = tmp_path / "sounds"
    write_good_sounds(sounds, count=2)
    home = tmp_path / "home"
    env = command_env(home, DISTILL_ALLOWED_ROOTS=str(tmp_path))
    server = subprocess.Popen([*DISTILL, "serve", "--port", "0"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        info = wait_until(lambda: read_server_file(home), what="the server file")
        scanned = httpx.post(info.url + "/new/scan", data={"dataset": str(sounds)},
                             headers={"Origin": info.url.rstrip("/")}, trust_env=False,
                             timeout=120)  # the scan runs in the helper: it is started  # fmt: skip
        assert scanned.status_code == 200, scanned.text
        helpers = wait_until(lambda: _children(server.pid), what="the helper process")
    finally:
        server.kill()
        server.wait(timeout=60)
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() and
                               "zombie" not in _state(pid) for pid in helpers),
               what=f"the helper processes {helpers} to end")  # fmt: skip


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"  # gone between the two looks


def test_distill_generate_goes_through_a_running_server(world) -> None:
    """With a server running, `distill generate` is one of its runs: listed by the API
    and on the runs page, its clips in the model's history, the report the same."""

    def generate_runs() -> dict[str, dict]:
        with page_client(world["server"]) as http:
            runs = http.get("/api/runs").json()
        return {r["run_id"]: r for r in runs if r["run_type"] == "generate"}

    before = generate_runs()
    done = distill(world["home"], "generate", "kit", "--seconds", "0.2", "--count", "2", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [Path(c["path"]).name for c in report["clips"]] == [
        "clip01_seed0.wav", "clip02_seed1.wav",
    ]  # fmt: skip
    assert Path(report["out_dir"]).parent == world["home"] / "generated" / "kit"
    mine = [run for run_id, run in generate_runs().items() if run_id not in before]
    assert len(mine) == 1 and mine[0]["status"] == "completed"
    shown = distill(world["home"], "runs", "show", mine[0]["run_id"])
    assert shown.returncode == 0 and "2 of 2 clips written" in shown.stdout
    assert "clip02_seed1.wav" in shown.stdout
    with page_client(world["server"]) as http:
        listed = http.get("/runs").text
        assert mine[0]["run_id"] in listed
        page = http.get(f"/runs/{mine[0]['run_id']}").text
        assert "Generate run" in page and "clip02_seed1.wav" in page


def test_the_api_runs_a_generate_request_within_the_forms_bounds(world) -> None:
    with page_client(world["server"]) as http:
        for body, says in (
            ({"model": "kit", "count": 99}, "generate.count"),
            ({"model": "kit", "seconds": 1e9}, "seconds"),
            ({"model": "kit", "out": "/tmp/elsewhere"}, "only into the model's history"),
            ({"model": "kit", "colour": "red"}, "unknown fields: colour"),
            ({"model": "../kit"}, "not in this server's model library"),
        ):
            refused = http.post("/api/generations", json=body)
            assert refused.status_code == 400 and says in refused.json()["error"], body
        typed = http.post("/api/runs", json={"run_type": "generate", "model": "kit", "count": 1,
                                             "seconds": 0.1})  # fmt: skip
        assert typed.status_code == 201, typed.text
    events = run_events(world["server"], typed.json()["run_id"])
    assert [e["kind"] for e in events].count("clip_generated") == 1
    assert events[-1]["kind"] == "run_completed"
