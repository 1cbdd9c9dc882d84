"""The CLI through a running `distill serve`: real processes, found through the server file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import commands
import httpx
import pytest
from commands import DISTILL, assert_lines_as_stored, command_env, json_lines
from helpers import write_good_sounds
from waiting import DEADLINE, wait_until

from distill.server.discovery import read_server_file

pytestmark = pytest.mark.slow
SMALL = ["--rvq-levels", "2", "--codebook-size", "16", "--batch-size", "4", "--stage-steps", "5"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli-server")
    dataset = base / "sounds"
    write_good_sounds(dataset)
    home = base / "home"
    env = command_env(home, DISTILL_ALLOWED_ROOTS=str(base))
    server = subprocess.Popen(
        [*DISTILL, "serve", "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        info = wait_until(lambda: read_server_file(home), what="the server file")
        yield {"dataset": dataset, "home": home, "env": env, "info": info}
    finally:
        server.terminate()
        server.communicate(timeout=60)


def distill(setup, *args: str) -> subprocess.CompletedProcess:
    """A client command on the server's data directory: it finds the server there."""
    return commands.distill(setup["home"], *args)


def server_runs(setup) -> list[dict]:
    return httpx.get(f"{setup['info'].url}/api/runs", trust_env=False).json()


def test_train_follow_runs_on_the_server(setup) -> None:
    result = distill(setup, "train", str(setup["dataset"]), "--epochs", "1", *SMALL, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    events = json_lines(result.stdout)
    assert events[0]["kind"] == "run_queued" and events[-1]["kind"] == "run_completed"
    runs = server_runs(setup)
    assert len(runs) == 1 and runs[0]["status"] == "completed"  # the server's run
    # The same lines as in-process: the event with its run_id, seq and ts, as stored.
    stored = assert_lines_as_stored(events, setup["home"], gapless=False)
    assert events[0]["run_id"] == runs[0]["run_id"] and events[-1]["seq"] == len(stored)
    after = len(stored) - 2
    rest = distill(setup, "runs", "follow", runs[0]["run_id"], "--after", str(after), "--json")
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert_lines_as_stored(json_lines(rest.stdout), setup["home"])
    assert [e["seq"] for e in json_lines(rest.stdout)] == [after + 1, after + 2]


def test_train_prior_runs_on_the_server(setup, tmp_path: Path) -> None:
    trained = distill(setup, "train", str(setup["dataset"]), "--epochs", "1", *SMALL,
                      "--model-name", "for-prior")  # fmt: skip
    assert trained.returncode == 0, trained.stdout + trained.stderr
    tiny = ["--epochs", "1", "--hidden-size", "16", "--layers", "1", "--heads", "2",
            "--generation-clips", "2"]  # fmt: skip
    result = distill(setup, "train-prior", "for-prior", *tiny, "--batch-size", "4", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = [e["kind"] for e in json_lines(result.stdout)]
    assert kinds[0] == "run_queued" and "prior_saved" in kinds and kinds[-1] == "run_completed"
    priors = [r for r in server_runs(setup) if r["run_type"] == "prior"]
    assert [(r["model_name"], r["status"]) for r in priors] == [("for-prior", "completed")]

    (tmp_path / "elsewhere.distill").write_bytes(b"")  # a server changes only its library
    outside = distill(setup, "train-prior", str(tmp_path / "elsewhere.distill"), "--no-follow")
    assert outside.returncode == 2 and "not in this server's model library" in outside.stdout


def test_no_follow_returns_the_run_id_and_follow_picks_it_up(setup) -> None:
    result = distill(
        setup, "train", str(setup["dataset"]), "--epochs", "1", *SMALL, "--no-follow", "--json"
    )
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    followed = distill(setup, "runs", "follow", run_id, "--json")
    assert followed.returncode == 0, followed.stdout + followed.stderr
    lines = json_lines(followed.stdout)
    kinds = [e["kind"] for e in lines]
    assert kinds[0] == "run_queued" and kinds[-1] == "run_completed"
    assert "epoch_metrics" in kinds
    # From past its last event there is nothing to show; the exit code is still the run's.
    past = distill(setup, "runs", "follow", run_id, "--after", str(lines[-1]["seq"]), "--json")
    assert (past.returncode, past.stdout) == (0, ""), past.stderr


def test_cancel_and_resume_go_through_the_server(setup) -> None:
    result = distill(
        setup, "train", str(setup["dataset"]), "--epochs", "500", *SMALL, "--no-follow"
    )
    run_id = result.stdout.strip()
    assert result.returncode == 0 and run_id
    cancelled = distill(setup, "runs", "cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    followed = distill(setup, "runs", "follow", run_id, "--json")
    assert followed.returncode == 1  # the run did not complete
    assert json_lines(followed.stdout)[-1]["kind"] == "run_cancelled"

    kinds = []
    with subprocess.Popen(
        [*DISTILL, "runs", "resume", run_id, "--json"],
        env=setup["env"], stdout=subprocess.PIPE, text=True,
    ) as resumed:  # fmt: skip
        for line in resumed.stdout:
            kinds.append(json.loads(line)["kind"])
            if kinds[-1] == "run_started":
                assert distill(setup, "runs", "cancel", run_id).returncode == 0
        assert resumed.wait(timeout=DEADLINE) == 1
    assert kinds[0] == "run_queued" and kinds[-1] == "run_cancelled"
    assert "run_started" in kinds


def test_bad_input_is_refused_by_the_server_with_its_reason(setup) -> None:
    result = distill(setup, "train", "/etc", "--epochs", "1", "--no-follow")
    assert result.returncode == 2
    out = " ".join(result.stdout.split())
    assert f"the distill server at {setup['info'].url} refused" in out
    assert "outside the folders" in out
    assert "restart the server as `distill serve --allow-root /etc`" in out  # how to allow it
    assert "add it to DISTILL_ALLOWED_ROOTS (`make run ROOTS=/etc` does)" in out


def test_a_busy_port_is_a_message_that_points_at_the_running_server(setup) -> None:
    """A second `distill serve` on the port of this data directory's server: no uvicorn
    traceback, the port named, the server already running pointed to, --port 0 offered."""
    port = str(setup["info"].port)
    second = distill(setup, "serve", "--port", port)
    out = " ".join(second.stdout.split())
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"port {port} is in use" in out and "--port 0" in out
    assert f"already runs at {setup['info'].url}/" in out
    assert "Traceback" not in second.stdout + second.stderr


def test_following_an_unknown_run_is_bad_input(setup) -> None:
    result = distill(setup, "runs", "follow", "no-such-run")
    assert result.returncode == 2
    assert "no run" in result.stdout


def test_a_stale_server_file_is_ignored(tmp_path: Path) -> None:
    from distill.server.discovery import ServerInfo, write_server_file

    home = tmp_path / "home"
    home.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    write_server_file(home, ServerInfo("127.0.0.1", 9, None, int(dead.stdout)))
    assert read_server_file(home) is None
    result = commands.distill(home, "train", str(tmp_path), "--no-follow")
    assert result.returncode == 2
    assert "needs a running `distill serve`" in result.stdout


def test_a_stopped_server_leaves_no_leaked_semaphores(tmp_path: Path) -> None:
    """The worker pool and the helper each hold multiprocessing queues. Stopped by SIGTERM
    (uvicorn then re-raises the signal, so Python's exit hooks never run), a server that
    still held them got "resource_tracker: ... leaked semaphore objects" at exit."""
    import signal

    empty, home = tmp_path / "empty", tmp_path / "home"
    empty.mkdir()
    env = command_env(home, DISTILL_ALLOWED_ROOTS=str(tmp_path))
    server = subprocess.Popen(
        [*DISTILL, "serve", "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        info = wait_until(lambda: read_server_file(home), what="the server file")
        # A run (it fails at once: no sounds) starts the worker pool; a scan, the helper.
        body = {"dataset": str(empty), "settings": {"epochs": 1}}
        run = httpx.post(f"{info.url}/api/runs", json=body, trust_env=False).json()["run_id"]

        def status() -> str:
            return httpx.get(f"{info.url}/api/runs/{run}", trust_env=False).json()["status"]

        wait_until(lambda: status() == "failed", what="the run to fail")
        # The scan starts the helper process first: on a busy machine, longer than httpx's 5 s.
        scan = httpx.post(f"{info.url}/new/scan", data={"dataset": str(empty)},
                          headers={"Origin": info.url}, trust_env=False,
                          timeout=DEADLINE)  # fmt: skip
        assert scan.status_code == 400 and "no audio files" in scan.text
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=DEADLINE)
    finally:
        server.kill()
    assert "leaked semaphore" not in stderr, stderr
    assert "Traceback" not in stderr, stderr
