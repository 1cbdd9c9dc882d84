"""Jobs on a real Dask cluster: a distributed.LocalCluster with worker processes, a real
server in front of it, real WebSocket streams and the real SQLite file.

The workers share this machine's disk, but nothing relies on it: each task carries its
data and sends its files home (core/cluster_task.py). Every test checks that what a run
made is in the server's data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import page_client, run_events, tiny_run_request, write_good_sounds
from waiting import DEADLINE, wait_until
from websockets.asyncio.client import connect

from distill.core.cluster_config import ClusterConfig, ClusterError
from distill.core.runner import Job
from distill.events import TERMINAL_KINDS
from distill.inference.spec import GenerateSpec
from distill.models.library import read_card
from distill.run_types import RunContext
from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings
from distill.training.jobs import GENERATE, VQVAE
from distill.training.specs import TrainJob

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.slow

LONG_RUN = 40  # epochs: long enough to still be running when a test steps in


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as local:
        yield local


@pytest.fixture(scope="module")
def world(cluster, tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    sounds = base / "sounds"
    write_good_sounds(sounds)
    (sounds / "notes.txt").write_text("not a sound")  # skipped, with its reason, remotely too
    settings = ServerSettings.for_host(
        base / "home", "127.0.0.1", 0, allowed_roots=(base,),
        cluster=ClusterConfig(cluster.scheduler_address),
    )  # fmt: skip
    with ServerThread(settings) as server:
        yield {"server": server, "home": base / "home", "sounds": sounds, "cluster": cluster}


def submit(server: ServerThread, dataset: Path, name: str | None = None, **settings) -> str:
    body = {**tiny_run_request(dataset, **settings), "model_name": name}
    response = httpx.post(server.url + "/api/runs", json=body, trust_env=False)
    assert response.status_code == 201, response.text
    return response.json()["run_id"]


async def events_until(url: str, kind: str) -> list[dict]:
    """A run's stream up to and with the first event of `kind` (or its end)."""
    events = []
    async with connect(url, proxy=None) as ws:
        async for message in ws:
            events.append(json.loads(message))
            if events[-1]["kind"] in (kind, *TERMINAL_KINDS):
                break
    return events


def stream(server: ServerThread, run_id: str, after: int = 0, until: str = "") -> list[dict]:
    url = f"{server.ws_url}/ws/runs/{run_id}/events?after={after}"
    if not until:
        return asyncio.run(events_until(url, "(the end)"))
    return asyncio.run(events_until(url, until))


def stored_seqs(server: ServerThread, run_id: str) -> list[int]:
    return [e.seq for e in server.call(server.core.store.events(run_id))]


def worker_pids(cluster) -> dict[str, int]:
    with distributed.Client(cluster, set_as_default=False) as client:
        return client.run(os.getpid)


def placed_on(events: list[dict]) -> list[str]:
    return [e["payload"]["worker"] for e in events if e["kind"] == "run_placed"]


def test_a_run_trains_on_a_worker_and_its_files_come_home(world) -> None:
    server, home = world["server"], world["home"]
    run_id = submit(server, world["sounds"], name="remote")
    events = run_events(server, run_id)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run_queued" and kinds[1] == "run_placed" and kinds[-1] == "run_completed"
    [worker] = placed_on(events)
    assert worker in worker_pids(world["cluster"])
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)) == stored_seqs(server, run_id)

    # Paths in the events are the server's, and the files they name are in its home.
    scan = next(e["payload"] for e in events if e["kind"] == "dataset_scanned")
    assert scan["dataset"] == str(world["sounds"])
    assert [Path(s["path"]).name for s in scan["files_skipped"]] == ["notes.txt"]
    checkpoints = [e["payload"]["path"] for e in events if e["kind"] == "checkpoint_saved"]
    assert checkpoints and all(
        Path(p).is_file() and Path(p).is_relative_to(home) for p in checkpoints
    )
    for preview in (e["payload"] for e in events if e["kind"] == "preview_ready"):
        for clip in preview["clips"]:
            assert (home / "runs" / run_id / clip["reconstruction_wav"]).is_file()
    card = read_card(home / "models" / "remote.distill")
    assert card.dataset.path == str(world["sounds"]) and card.run_id == run_id

    with page_client(server) as http:
        run_page = http.get(f"/runs/{run_id}").text
        assert f"on cluster worker <code>{worker}</code>" in run_page
        home_page = http.get("/").text
        assert world["cluster"].scheduler_address in home_page
        assert home_page.count('<tr class="worker">') == 2
        assert "worker-idle" in home_page


def test_two_runs_at_once_land_on_two_workers(world) -> None:
    """Both train at the same time: each reaches its first epoch before either is stopped."""
    server = world["server"]
    runs = [submit(server, world["sounds"], epochs=10 * LONG_RUN, patience=0) for _ in range(2)]
    first_epochs = [stream(server, run_id, until="epoch_metrics") for run_id in runs]
    assert [s[-1]["kind"] for s in first_epochs] == ["epoch_metrics", "epoch_metrics"]
    with page_client(server) as http:
        for run_id in runs:
            assert http.post(f"/api/runs/{run_id}/cancel").status_code == 202
    ends = [
        stream(server, run_id, after=s[-1]["seq"])[-1]
        for run_id, s in zip(runs, first_epochs, strict=True)
    ]
    assert [e["kind"] for e in ends] == ["run_cancelled", "run_cancelled"]
    workers = [placed_on(s) for s in first_epochs]
    assert len(set(workers[0] + workers[1])) == 2  # one each: each worker has one thread


def test_a_killed_worker_fails_the_run_and_a_resume_finishes_elsewhere(world) -> None:
    server, cluster = world["server"], world["cluster"]
    run_id = submit(server, world["sounds"], epochs=LONG_RUN, patience=0)
    before = stream(server, run_id, until="checkpoint_saved")
    assert before[-1]["kind"] == "checkpoint_saved"
    [worker] = placed_on(before)
    os.kill(worker_pids(cluster)[worker], signal.SIGKILL)

    rest = stream(server, run_id, after=before[-1]["seq"])
    failed = rest[-1]
    assert failed["kind"] == "run_failed"
    assert f"the cluster worker {worker} was lost" in failed["payload"]["error"]
    checkpoint = Path(failed["payload"]["checkpoint_path"])
    assert checkpoint.is_file() and checkpoint.is_relative_to(world["home"])

    with page_client(server) as http:
        resumed = http.post(f"/api/runs/{run_id}/resume")
        assert resumed.status_code == 202, resumed.text
        after = resumed.json()["after_seq"]
    again = stream(server, run_id, after=after)
    assert again[-1]["kind"] == "run_completed"
    [elsewhere] = placed_on(again)
    assert elsewhere != worker
    started = next(e for e in again if e["kind"] == "run_started")
    assert started["payload"]["start_epoch"] >= 1  # from the checkpoint that came home
    seqs = stored_seqs(server, run_id)
    assert seqs == list(range(1, len(seqs) + 1))


def test_cancel_stops_a_run_on_the_cluster_with_a_checkpoint_at_home(world) -> None:
    server = world["server"]
    run_id = submit(server, world["sounds"], epochs=LONG_RUN, patience=0)
    before = stream(server, run_id, until="checkpoint_saved")
    with page_client(server) as http:
        assert http.post(f"/api/runs/{run_id}/cancel").status_code == 202
    rest = stream(server, run_id, after=before[-1]["seq"])
    cancelled = rest[-1]
    assert cancelled["kind"] == "run_cancelled"
    assert Path(cancelled["payload"]["checkpoint_path"]).is_file()
    assert cancelled["payload"]["epoch"] < LONG_RUN


def test_a_prior_and_a_generation_run_on_the_cluster(world) -> None:
    server, home = world["server"], world["home"]
    run_events(server, submit(server, world["sounds"], name="drums"))
    prior = {
        "model": "drums",
        "settings": {"epochs": 2, "batch_size": 4, "min_steps_per_epoch": 2},
        "overrides": {"hidden_size": 16, "layers": 1, "heads": 2},
    }
    with page_client(server) as http:
        response = http.post("/api/priors", json=prior)
        assert response.status_code == 201, response.text
        events = run_events(server, response.json()["run_id"])
        assert events[-1]["kind"] == "run_completed" and placed_on(events)
        scan = next(e["payload"] for e in events if e["kind"] == "codes_extracted")
        assert scan["dataset_changed"] is False  # same files, same fingerprint, remotely
        assert read_card(home / "models" / "drums.distill").prior is not None

        form = {"seconds": "0.5", "count": "2", "seed": "5", "temperature": "1", "top_k": "0",
                "top_p": "1"}  # fmt: skip
        made = http.post("/models/drums/generate", data=form)
        assert made.status_code == 303, made.text
        run_id = made.headers["location"].rsplit("/", 1)[-1]
        events = run_events(server, run_id)  # a run like any other: placed on a worker
        assert events[-1]["kind"] == "run_completed" and placed_on(events)
        assert [e["kind"] for e in events].count("clip_generated") == 2
        run_page = http.get(f"/runs/{run_id}").text
        assert "on cluster worker" in run_page and "clip02_seed6.wav" in run_page
        page = http.get("/models/drums").text
    made_files = (home / "generated" / "drums").rglob("clip*_seed*.wav")
    clips = sorted(p.name for p in made_files if not p.stem.endswith("_match"))
    assert clips == ["clip01_seed5.wav", "clip02_seed6.wav"]
    assert "clip01_seed5.wav" in page
    manifest = next((home / "generated" / "drums").rglob("generation.json")).read_text()
    assert str(home) in manifest and "dask-scratch" not in manifest


@contextlib.contextmanager
def scheduler_and_worker(folder: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """A scheduler and one worker, each a process of its own as on a real cluster, so
    that the scheduler can be killed outright; (the scheduler's process, its address)."""
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    info = folder / "scheduler.json"
    scheduler = subprocess.Popen(
        [*dask, "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker = None
    try:
        address = wait_until(
            lambda: info.is_file() and json.loads(info.read_text() or "{}").get("address"),
            what="the scheduler to write its address",
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
             "--no-nanny", "--no-dashboard", "--local-directory", str(folder / "worker")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        with distributed.Client(address, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=DEADLINE)
        yield scheduler, address
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.kill()
                process.wait()


def test_the_scheduler_gone_interrupts_runs_and_the_server_says_so(tmp_path) -> None:
    sounds = tmp_path / "sounds"
    write_good_sounds(sounds)
    with scheduler_and_worker(tmp_path) as (scheduler, address):
        settings = ServerSettings.for_host(
            tmp_path / "home", "127.0.0.1", 0, allowed_roots=(tmp_path,),
            cluster=ClusterConfig(address),
        )  # fmt: skip
        with ServerThread(settings) as server:
            run_id = submit(server, sounds, epochs=LONG_RUN, patience=0)
            before = stream(server, run_id, until="checkpoint_saved")
            scheduler.kill()
            rest = stream(server, run_id, after=before[-1]["seq"])
            assert rest[-1]["kind"] == "run_interrupted"
            assert "stopped answering" in rest[-1]["payload"]["reason"]
            assert Path(rest[-1]["payload"]["checkpoint_path"]).is_file()
            with page_client(server) as http:
                home_page = http.get("/")
                assert home_page.status_code == 200 and 'id="cluster-lost"' in home_page.text
                refused = http.post("/api/runs", json=tiny_run_request(sounds))
                assert refused.status_code == 409 and "stopped answering" in refused.text


def test_an_unreachable_scheduler_is_a_clear_error() -> None:
    from distill.core.cluster import check_reachable

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at {address}"):
        check_reachable(ClusterConfig(address, connect_timeout=1.0))


def test_something_that_is_not_a_scheduler_is_a_clear_error() -> None:
    """A port that answers as a web server does (found by hand: a proxy's "HTTP/1.1" read
    as a frame length of exabytes, a MemoryError) is refused like an unreachable one."""
    import threading

    from distill.core.cluster import check_reachable

    listener = socket.create_server(("127.0.0.1", 0))
    address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"

    def answer_garbage() -> None:
        with contextlib.suppress(OSError):
            connection, _ = listener.accept()
            with connection:
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4)
                connection.recv(1024)

    threading.Thread(target=answer_garbage, daemon=True).start()
    try:
        with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at {address}"):
            check_reachable(ClusterConfig(address, connect_timeout=2.0))
    finally:
        listener.close()


def test_cluster_addresses_are_checked_and_plain_remote_ones_warned_about(tmp_path) -> None:
    assert ClusterConfig.from_options(None) is None
    assert ClusterConfig.from_options("127.0.0.1:8786").address == "tcp://127.0.0.1:8786"
    assert ClusterConfig.from_options("tcp://localhost:8786").warning() is None
    warning = ClusterConfig.from_options("tcp://10.1.2.3:8786").warning()
    assert warning and "anyone who can reach it can run code on its workers" in warning
    cert = tmp_path / "ca.pem"
    cert.write_text("-")
    tls = ClusterConfig.from_options("tls://10.1.2.3:8786", str(cert), str(cert), str(cert))
    assert tls.uses_tls and tls.warning() is None
    for bad, why in (
        (("ftp://x:1",), "use a tcp:// or tls://"),
        (("tcp://x:1", str(cert)), "certificates need a tls:// address"),
        (("tls://x:1", str(tmp_path / "none.pem")), "no certificate file at"),
        ((None, str(cert)), "without a cluster address"),
    ):
        with pytest.raises(ClusterError, match=why):
            ClusterConfig.from_options(*bad)


def test_serve_refuses_a_bad_cluster_address_with_the_reason(tmp_path) -> None:
    env = {**os.environ, "DISTILL_HOME": str(tmp_path / "home"), "DISTILL_CLUSTER": "ftp://x:1"}
    done = subprocess.run(
        [sys.executable, "-m", "distill.cli.main", "serve", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2  # a bad address: the user's to fix
    assert "ftp://x:1: use a tcp:// or tls:// scheduler address" in done.stdout


def test_a_server_without_a_cluster_never_imports_dask(tmp_path) -> None:
    script = f"""
import sys, httpx
from distill.loadgen import LOAD, LoadRequest
from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings
settings = ServerSettings.for_host({str(tmp_path / "home")!r}, "127.0.0.1", 0)
with ServerThread(settings) as server:
    server.core.register(LOAD)
    run_id = server.call(server.core.submit("load", LoadRequest(50, 0.2)))
    assert httpx.get(server.url + "/", trust_env=False).status_code == 200
    assert httpx.get(server.url + "/runs/" + run_id, trust_env=False).status_code == 200
print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def a_job(home: Path, sounds: Path) -> Job:
    spec = TrainJob(sounds, home / "models" / "m.distill", home / "cache" / "mel")
    return Job("r1", VQVAE, spec, RunContext("r1", home / "runs" / "r1"))


def test_a_task_reads_and_writes_only_its_staging_folder(tmp_path) -> None:
    """The worker's job points only into the task's own folder, and what it sends home is
    mapped back to the server's paths; nothing in between names a server path."""
    from distill.core.cluster_task import Staging
    from distill.core.shipping import make_bundle

    home, sounds = tmp_path / "home", tmp_path / "sounds"
    write_good_sounds(sounds, count=2)
    (sounds / "notes.txt").write_text("not a sound")
    job = a_job(home, sounds)
    bundle = make_bundle(job)
    shipped = bundle["folders"]["dataset"]
    assert {rel for rel, _, _ in shipped} == {p.name for p in sounds.iterdir()}
    assert dict((rel, data) for rel, data, _ in shipped)["notes.txt"] == b""  # not read
    staging = Staging(tmp_path / "worker", job, bundle)
    staged = staging.job
    for home_path, staged_path in (
        (job.spec.dataset, staged.spec.dataset),
        (job.context.run_dir, staged.context.run_dir),
        (job.spec.model_path, staged.spec.model_path),
        (job.spec.cache_dir, staged.spec.cache_dir),
    ):
        assert staged_path.is_relative_to(tmp_path / "worker"), staged_path
        assert staging.map_home(str(staged_path)) == str(home_path)
    for rel, _, mtime_ns in shipped:
        assert (staged.spec.dataset / rel).stat().st_mtime_ns == mtime_ns
    nested = {"paths": [f"{staged.context.run_dir}/previews/a.wav"], "other": "/elsewhere"}
    assert staging.map_home(nested) == {
        "paths": [f"{job.context.run_dir}/previews/a.wav"],
        "other": "/elsewhere",
    }

    (staged.context.run_dir / "previews").mkdir()
    (staged.context.run_dir / "previews" / "a.wav").write_bytes(b"RIFF")
    assert staging.changed_files() == [["run/previews/a.wav", b"RIFF"]]
    assert staging.changed_files() == []  # sent once, until it changes


def test_files_from_a_task_stay_inside_the_runs_folders(tmp_path) -> None:
    from distill.core.shipping import write_home

    job = Job(
        "r1", GENERATE,
        GenerateSpec(tmp_path / "m.distill", tmp_path / "out"),
        RunContext("r1", tmp_path / "run"),
    )  # fmt: skip
    write_home(job, [["run/previews/a.wav", b"RIFF"], ["output/out_dir/clip01.wav", b"RIFF"]])
    assert (tmp_path / "run" / "previews" / "a.wav").read_bytes() == b"RIFF"
    assert (tmp_path / "out" / "clip01.wav").read_bytes() == b"RIFF"
    for key in ("run/../escape", "run/", "elsewhere/a.wav", "run//etc/passwd",
                "output/out_dir/../../escape", "output/model_path/a.wav"):  # fmt: skip
        with pytest.raises(ClusterError, match="outside its run's folders|no output"):
            write_home(job, [[key, b"x"]])
    assert not (tmp_path / "escape").exists()
    with pytest.raises(ValueError):  # a model file must check out before it is kept
        write_home(job, [["model/model_path", b"not a model"]])
    assert not (tmp_path / "m.distill").exists()


def test_a_cuda_run_waits_for_a_worker_with_a_gpu_and_lands_there(world, tmp_path) -> None:
    """A run asked to train on CUDA asks for the worker resource GPU=1. A third worker that
    declares one joins; the run lands on it (and, with no CUDA on this machine, fails
    there saying so: the placement is what is tested)."""
    cluster, server = world["cluster"], world["server"]
    gpu_worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
         "--nthreads", "1", "--no-nanny", "--no-dashboard", "--resources", "GPU=1",
         "--name", "gpu-box", "--local-directory", str(tmp_path / "gpu")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with distributed.Client(cluster, set_as_default=False) as client:
            client.wait_for_workers(3, timeout=DEADLINE)
            [gpu_address] = [
                address for address, info in client.scheduler_info(n_workers=-1)["workers"].items()
                if info.get("resources", {}).get("GPU")
            ]  # fmt: skip
        with page_client(server) as http:
            home_page = wait_until(
                lambda: (page := http.get("/").text).count('<tr class="worker">') == 3 and page,
                what="the dashboard to list the third worker",
            )
        row = re.search(r"<td>gpu-box</td>(?:(?!</tr>).)*</tr>", home_page, re.DOTALL)
        assert row and re.search(r"<td>1</td>\s*<td class=\"worker-", row.group(0))  # GPU: 1
        events = run_events(server, submit(server, world["sounds"], device="cuda"))
        assert placed_on(events) == [gpu_address]
        assert events[-1]["kind"] == "run_failed"
        assert "torch sees no CUDA device here" in events[-1]["payload"]["error"]
    finally:
        gpu_worker.kill()
        gpu_worker.wait()


def make_certificates(folder: Path) -> dict[str, str]:
    """A throwaway CA and one certificate it signed for 127.0.0.1 (scheduler, worker and
    client all use it), made with the openssl command."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, request, cert = (
        str(folder / name) for name in ("ca.key", "ca.pem", "node.key", "node.csr", "node.pem")
    )
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for command in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "1", "-subj", "/CN=distill test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request,
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "1", "-extfile", str(folder / "san.cnf")],
    ):  # fmt: skip
        subprocess.run(["openssl", *command], check=True, capture_output=True)
    return {"ca": ca, "cert": cert, "key": key}


@pytest.mark.skipif(
    not shutil.which("openssl"), reason="needs the openssl command for certificates"
)
def test_a_tls_cluster_runs_with_certificates_and_refuses_without(tmp_path) -> None:
    from distill.core.cluster import check_reachable

    files = make_certificates(tmp_path / "certs")
    security = distributed.Security(
        tls_ca_file=files["ca"], require_encryption=True,
        tls_scheduler_cert=files["cert"], tls_scheduler_key=files["key"],
        tls_worker_cert=files["cert"], tls_worker_key=files["key"],
        tls_client_cert=files["cert"], tls_client_key=files["key"],
    )  # fmt: skip
    sounds = tmp_path / "sounds"
    write_good_sounds(sounds, count=5)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
        protocol="tls://", security=security, host="127.0.0.1",
    ) as local:  # fmt: skip
        address = local.scheduler_address
        assert address.startswith("tls://")
        with pytest.raises(ClusterError, match="a tls:// scheduler needs certificates"):
            check_reachable(ClusterConfig(address, connect_timeout=2.0))  # no certificates
        config = ClusterConfig.from_options(address, files["ca"], files["cert"], files["key"])
        assert config is not None and config.warning() is None
        settings = ServerSettings.for_host(
            tmp_path / "home", "127.0.0.1", 0, allowed_roots=(tmp_path,), cluster=config
        )
        with ServerThread(settings) as server:
            events = run_events(server, submit(server, sounds, name="over-tls"))
        assert events[-1]["kind"] == "run_completed" and placed_on(events)[0].startswith("tls://")
        assert (tmp_path / "home" / "models" / "over-tls.distill").is_file()
