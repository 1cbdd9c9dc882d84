"""A model a queued or running run uses keeps its name and file until the run ends: the
run would otherwise fail with "no such model file". Refused through the dashboard and
the CLI, allowed again once the run is gone. A real server, real processes."""

from __future__ import annotations

import html

import pytest
from commands import distill
from helpers import TINY_PRIOR, page_client, run_events, tiny_run_request, write_good_sounds
from waiting import wait_until

from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings

pytestmark = pytest.mark.slow


def test_a_model_is_not_renamed_or_deleted_while_a_prior_for_it_is_queued(tmp_path) -> None:
    sounds = tmp_path / "sounds"
    write_good_sounds(sounds)
    home = tmp_path / "home"
    settings = ServerSettings.for_host(home, "127.0.0.1", 0, allowed_roots=(tmp_path,))
    with ServerThread(settings) as server, page_client(server) as http:
        made = http.post("/api/runs", json={**tiny_run_request(sounds), "model_name": "kicks"})
        assert run_events(server, made.json()["run_id"])[-1]["kind"] == "run_completed"
        # A long run holds the one worker, so the prior waits in the queue behind it.
        busy = http.post("/api/runs", json=tiny_run_request(sounds, epochs=500)).json()["run_id"]
        prior = http.post("/api/priors", json={"model": "kicks", "overrides": TINY_PRIOR})
        prior_id = prior.json()["run_id"]
        assert http.get(f"/api/runs/{prior_id}").json()["status"] == "queued"

        renamed = http.post("/models/kicks/rename", data={"new_name": "kicks-2"})
        assert renamed.status_code == 409
        assert f"in use by run {prior_id} (queued)" in html.unescape(renamed.text)
        assert http.post("/models/kicks/delete").status_code == 409
        cli = distill(home, "models", "rename", "kicks", "kicks-2")
        assert cli.returncode == 2 and "in use by run" in cli.stdout, cli.stdout + cli.stderr
        assert (home / "models" / "kicks.distill").is_file()

        for run_id in (prior_id, busy):
            assert http.post(f"/api/runs/{run_id}/cancel").status_code == 202

        def ended() -> bool:
            return http.get(f"/api/runs/{prior_id}").json()["status"] == "cancelled"

        wait_until(ended, what="the queued prior to be cancelled")
        assert http.post("/models/kicks/rename", data={"new_name": "kicks-2"}).status_code == 303
        assert (home / "models" / "kicks-2.distill").is_file()
