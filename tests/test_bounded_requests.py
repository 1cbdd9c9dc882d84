"""Bounded work for every request (issue 27), through the real interfaces: a real server
on 127.0.0.1 with a tiny model (and prior) in its library, and the real `distill` CLI.

What a request says is checked against what the model allows before any work is done:
a code grid's own numbers must be the model's, deeply nested JSON is a 400 (not a
RecursionError), and the editor's fields are the exact types they claim to be."""

from __future__ import annotations

import io
import json
import shutil
import socket
import threading
import wave

import pytest
from commands import distill
from helpers import page_client
from waiting import wait_until

from distill.inference.codes import CodeGrid, decode_chunks
from distill.models.library import load_vqvae
from distill.paths import models_dir
from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings

pytestmark = pytest.mark.slow
DEEP = "[" * 100_000  # 100 kB: under every size limit, past the parser's recursion limit


@pytest.fixture(scope="module")
def world(library_server) -> dict:
    return library_server


# -- code grids: what the model knows is the model's ---------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [("samples_per_step", 1_000_000), ("sample_rate", 1), ("codebook_size", 9)],
)
def test_a_grid_that_disagrees_with_its_model_is_refused(world, key, value) -> None:
    grid = {**world["grid"], key: value}
    with page_client(world["server"]) as http:
        for route, extra in (("decode", {}), ("save", {"name": "x"}),
                             ("regenerate", {"start": 0, "end": 1})):  # fmt: skip
            response = http.post(f"/models/kit/edit/{route}", json={"grid": grid, **extra})
            assert response.status_code == 400, (route, response.text)
            assert key in response.json()["error"], response.text
        honest = http.post("/models/kit/edit/decode", json={"grid": world["grid"]})
        assert honest.status_code == 200 and honest.headers["content-type"] == "audio/wav"
    assert not (world["home"] / "generated" / "kit" / "edits" / "x.wav").exists()


def test_the_cli_refuses_a_lying_or_deep_codes_file_without_a_traceback(world, tmp_path) -> None:
    lying = tmp_path / "lying.codes.json"
    lying.write_text(json.dumps({**world["grid"], "samples_per_step": 1_000_000}))
    deep = tmp_path / "deep.codes.json"
    deep.write_text(DEEP)
    for path, why in ((lying, "samples_per_step"), (deep, "nested too deeply")):
        out = tmp_path / "out.wav"
        done = distill(world["home"], "codes", "decode", str(world["model"]), str(path),
                       "--out", str(out))  # fmt: skip
        assert done.returncode == 2, done.stdout + done.stderr
        assert why in done.stdout and "Traceback" not in done.stdout + done.stderr
        assert not out.exists()


@pytest.mark.parametrize(
    "route",
    ["/api/runs", "/api/priors", "/models/kit/edit/decode", "/models/kit/edit/regenerate",
     "/models/kit/edit/save"],
)  # fmt: skip
def test_deeply_nested_json_is_a_400(world, route) -> None:
    with page_client(world["server"]) as http:
        response = http.post(route, content=DEEP, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert "nested too deeply" in response.json()["error"]


@pytest.mark.parametrize(
    ("route", "fields", "named"),
    [
        ("regenerate", {"start": 1.5, "end": 3}, "start"),
        ("regenerate", {"start": 0, "end": 3, "temperature": True}, "temperature"),
        ("regenerate", {"start": 0, "end": 3, "seed": "7"}, "seed"),
        ("decode", {"muted": [99]}, "muted levels"),
    ],
)
def test_editor_fields_must_be_what_they_claim(world, route, fields, named) -> None:
    with page_client(world["server"]) as http:
        response = http.post(f"/models/kit/edit/{route}", json={"grid": world["grid"], **fields})
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]


# -- a run's options: the API applies the bounds the form and the CLI apply ---------------


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("settings", "epochs", 0),
        ("settings", "epochs", -1),
        ("settings", "batch_size", 0),
        ("settings", "batch_size", 2**40),
        ("settings", "stage_steps", 10**9),
        ("settings", "val_fraction", 5),
        ("settings", "seed", -1),
        ("settings", "epochs", 1.5),
        ("settings", "device", "tpu"),
        ("mel", "sample_rate", 10**9),
        ("overrides", "hidden_channels", 10**6),
    ],
)
def test_the_api_refuses_a_run_option_out_of_bounds(world, section, key, value) -> None:
    from helpers import tiny_run_request

    body = tiny_run_request(world["sounds"])
    body[section] = {**body[section], key: value}
    with page_client(world["server"]) as http:
        before = http.get("/api/runs").json()
        response = http.post("/api/runs", json=body)
        assert response.status_code == 400, response.text
        assert f"{section}.{key}" in response.json()["error"]
        assert http.get("/api/runs").json() == before  # nothing queued


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("settings", "epochs", 0), ("settings", "batch_size", 2**40),
     ("overrides", "layers", 10**6), ("overrides", "dropout", 1.5)],
)  # fmt: skip
def test_the_prior_api_refuses_an_option_out_of_bounds(world, section, key, value) -> None:
    with page_client(world["server"]) as http:
        response = http.post("/api/priors", json={"model": "kit", section: {key: value}})
    assert response.status_code == 400, response.text
    assert f"{section}.{key}" in response.json()["error"]


def test_the_form_and_the_cli_refuse_what_the_api_refuses(world) -> None:
    with page_client(world["server"]) as http:
        form = http.post("/runs", data={"dataset": str(world["sounds"]), "epochs": "0"})
    assert form.status_code == 400 and "epochs must be 1 to 1000" in form.text
    for option, value in (("--epochs", "0"), ("--batch-size", str(2**40)), ("--seed", "-1")):
        done = distill(world["home"], "train", str(world["sounds"]), option, value)
        assert done.returncode == 2 and "Invalid value" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [("--temperature", "inf", "--temperature"), ("--temperature", "nan", "temperature"),
     ("--seed", "1e23", "--seed"), ("--seed", str(10**23), "--seed"), ("--count", "9", "--count")],
)  # fmt: skip
def test_generate_refuses_a_bad_option_clearly(world, tmp_path, option, value, says) -> None:
    out = tmp_path / "clips"
    done = distill(world["home"], "generate", str(world["model"]), option, value, "--out", str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stdout + done.stderr and "Traceback" not in done.stdout + done.stderr
    assert not out.exists()


# -- bodies: capped as they stream ----------------------------------------------------------


def _answer_to_a_claimed_length(server, path: str, length: int, content_type: str) -> tuple:
    """Send headers claiming `length` bytes and no body: a server that waits for the body
    before its check never answers (the socket's timeout fails the test)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.info.port, timeout=20)
    try:
        connection.putrequest("POST", path)
        origin = f"http://127.0.0.1:{server.info.port}"
        for name, value in (("Content-Length", str(length)), ("Content-Type", content_type),
                            ("Origin", origin)):  # fmt: skip
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/api/runs", "application/json"), ("/models/kit/edit/decode", "application/json"),
     ("/runs", "application/x-www-form-urlencoded")],
)  # fmt: skip
def test_a_body_over_the_limit_is_refused_before_it_is_read(world, path, content_type) -> None:
    status, text = _answer_to_a_claimed_length(world["server"], path, 300 * 1024**2, content_type)
    assert status == 413 and "larger than this server accepts" in text


def test_a_streamed_body_is_cut_off_at_the_limit(world) -> None:
    def chunks():  # no Content-Length: chunked, 2 MiB of JSON
        yield b'{"dataset": "'
        for _ in range(32):
            yield b"x" * 65536
        yield b'"}'

    with page_client(world["server"]) as http:
        response = http.post("/api/runs", content=chunks(),
                             headers={"Content-Type": "application/json"})  # fmt: skip
        assert response.status_code == 413 and "1 MiB at most" in response.json()["error"]
        grid = http.post("/models/kit/edit/decode", content=chunks(),
                         headers={"Content-Type": "application/json"})  # fmt: skip
        assert grid.status_code != 413  # 2 MiB is within the editor's 4 MiB


def test_the_editors_upload_over_the_limit_is_a_413(world, tmp_path) -> None:
    settings = ServerSettings.for_host(tmp_path / "home", "127.0.0.1", 0, max_upload_bytes=1000)
    shutil.copy(world["model"], models_dir(settings.home) / "kit.distill")
    with ServerThread(settings) as server, page_client(server) as http:
        files = {"sound": ("big.wav", b"RIFF" + b"\0" * 5000, "audio/wav")}
        response = http.post("/models/kit/edit/upload", files=files)
    assert response.status_code == 413, response.text
    assert list(settings.uploads_dir.glob("*/*")) == []  # nothing kept of it


# -- addresses: strict Host, no open redirect, no NUL ---------------------------------------


def _raw_get(server, path: str, host: str) -> tuple[int, dict]:
    """A GET with the path and Host sent byte for byte (httpx would normalise them)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.info.port, timeout=30)
    try:
        connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host)
        connection.endheaders()
        response = connection.getresponse()
        response.read()
        return response.status, dict(response.headers)
    finally:
        connection.close()


def test_a_nul_in_the_editors_sound_is_a_404(world) -> None:
    port = world["server"].info.port
    for query in ("sound=a%00b", "clip=a%00b", "edit=a%00b", "upload=a%00b"):
        status, _ = _raw_get(world["server"], f"/models/kit/edit?{query}", f"127.0.0.1:{port}")
        assert status == 404, query


def test_the_token_redirect_stays_on_this_server(tmp_path) -> None:
    settings = ServerSettings.for_host(tmp_path / "home", "127.0.0.1", 0, token="T0ken")
    with ServerThread(settings) as server:
        host = f"127.0.0.1:{server.info.port}"
        for path in ("//evil.example/?token=T0ken", "/\\evil.example/?token=T0ken"):
            status, headers = _raw_get(server, path, host)
            assert status == 303 and headers["location"] == "/evil.example/", headers


@pytest.mark.parametrize(
    "host", ["127.0.0.1:1@evil.example", "127.0.0.1:1/evil", "evil.example#127.0.0.1", "[::1"]
)
def test_a_host_header_is_parsed_strictly(world, host) -> None:
    status, _ = _raw_get(world["server"], "/", host)
    assert status == 400


def test_an_honest_host_header_is_let_through(world) -> None:
    port = world["server"].info.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "127.0.0.1"):
        assert _raw_get(world["server"], "/", host)[0] == 200, host


def test_a_link_out_of_a_dataset_is_skipped_with_the_reason(world, tmp_path) -> None:
    outside = tmp_path / "outside.wav"
    shutil.copy(sorted(world["sounds"].iterdir())[0], outside)  # a real sound, elsewhere
    link = world["sounds"] / "escape.wav"
    link.symlink_to(outside)
    try:
        with page_client(world["server"]) as http:
            scan = http.post("/new/scan", data={"dataset": str(world["sounds"])}, timeout=120)
            assert scan.status_code == 200 and "escape.wav" in scan.text
            assert "links outside the folder" in scan.text
            chooser = http.get("/models/kit/edit", timeout=120)
            assert chooser.status_code == 200 and "good_00" in chooser.text
            assert "escape.wav" not in chooser.text
    finally:
        link.unlink()


# -- --cluster: a bad address is a clear exit 2, a silent one ends within its timeout -----


@pytest.mark.parametrize(
    ("address", "says"),
    [("tcp://[::1", "not a scheduler address"), ("tcp://127.0.0.1:99999", "Port out of range"),
     ("tcp://", "names no host"), ("tcp://127.0.0.1:8x", "not a scheduler address")],
)  # fmt: skip
def test_serve_refuses_a_malformed_cluster_address(tmp_path, address, says) -> None:
    done = distill(tmp_path / "home", "serve", "--port", "0", "--cluster", address)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stdout and "Traceback" not in done.stdout + done.stderr


def test_a_cluster_address_that_never_answers_is_given_up_on(tmp_path) -> None:
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    try:
        address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        done = distill(tmp_path / "home", "serve", "--port", "0", "--cluster", address)
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"cannot reach the Dask scheduler at {address}" in done.stdout


# -- long work: a cap on what the editor opens, and a lane of its own ---------------------


def test_the_editor_opens_sounds_up_to_its_cap_and_says_so(world, tmp_path) -> None:
    import numpy as np
    import soundfile as sf

    from distill.audio.synth import tone

    long_sound = tmp_path / "long.wav"
    sf.write(long_sound, np.tile(tone(220, 1.0, 8000), 200), 8000)  # 200 s
    with page_client(world["server"]) as http:
        chooser = http.get("/models/kit/edit")
        assert "opens sounds up to 3 minutes" in chooser.text
        sent = http.post("/models/kit/edit/upload",
                         files={"sound": ("long.wav", long_sound.read_bytes(), "audio/wav")})  # fmt: skip
        opened = http.get(sent.headers["location"])
        assert opened.status_code == 400 and "up to 3 minutes" in opened.text
        steps = world["grid"]["samples_per_step"]
        rows = [[0] * (200 * 8000 // steps) for _ in world["grid"]["codes"]]
        decoded = http.post(
            "/models/kit/edit/decode", json={"grid": {**world["grid"], "codes": rows}}
        )
        assert decoded.status_code == 400 and "up to 3 minutes" in decoded.json()["error"]


def test_an_edit_does_not_wait_behind_a_generate_request(world) -> None:
    form = {"seconds": "60", "count": "8", "mode": "continuous"}
    with page_client(world["server"]) as http:
        started = http.post("/models/kit/generate", data=form)
        assert started.status_code == 303
        run_id = started.headers["location"].rsplit("/", 1)[-1]
        try:
            decoded = http.post("/models/kit/edit/decode", json={"grid": world["grid"]})
            assert decoded.status_code == 200
            status = http.get(f"/api/runs/{run_id}").json()["status"]
            assert status in ("queued", "running")  # the generate run goes on
        finally:
            http.post(f"/runs/{run_id}/cancel")
            wait_until(lambda: http.get(f"/api/runs/{run_id}").json()["status"] == "cancelled",
                       what="the generate run to stop")  # fmt: skip


def _long_grid(world, seconds: float) -> dict:
    grid = world["grid"]
    steps = int(seconds * grid["sample_rate"] / grid["samples_per_step"])
    rows = [[(step * 7 + level) % grid["codebook_size"] for step in range(steps)]
            for level in range(len(grid["codes"]))]  # fmt: skip
    return {**grid, "codes": rows}


def test_an_edit_waits_for_at_most_a_piece_of_a_long_decode(world) -> None:
    lane = world["server"].app.state.editor_helper
    long_grid = _long_grid(world, 170)  # just under the editor's cap: tens of pieces
    answers: dict = {}

    def decode_long() -> None:
        with page_client(world["server"]) as http:
            answers["long"] = http.post("/models/kit/edit/decode", json={"grid": long_grid})

    before = lane.long_pieces
    thread = threading.Thread(target=decode_long)
    thread.start()
    try:
        wait_until(lambda: lane.long_pieces > before, what="the long decode's second piece")
        with page_client(world["server"]) as http:
            small = http.post("/models/kit/edit/decode", json={"grid": world["grid"]})
        pieces_before_the_edit = lane.long_pieces - before
    finally:
        thread.join()
    assert small.status_code == 200 and small.headers["content-type"] == "audio/wav"
    long = answers["long"]
    assert long.status_code == 200
    with wave.open(io.BytesIO(long.content)) as sound:  # the whole long sound, all pieces
        assert sound.getnframes() == len(long_grid["codes"][0]) * long_grid["samples_per_step"]
    pieces = lane.long_pieces - before
    assert pieces_before_the_edit < pieces  # answered while the long decode went on


def test_a_long_decode_stops_when_its_client_goes(world) -> None:
    lane, server = world["server"].app.state.editor_helper, world["server"]
    body = json.dumps({"grid": _long_grid(world, 170)}).encode()
    origin = f"http://127.0.0.1:{server.info.port}"
    head = (f"POST /models/kit/edit/decode HTTP/1.1\r\nHost: 127.0.0.1:{server.info.port}\r\n"
            f"Origin: {origin}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    abandoned, before = lane.abandoned, lane.long_pieces
    with socket.create_connection(("127.0.0.1", server.info.port)) as client:
        client.sendall(head + body)
        wait_until(lambda: lane.long_pieces > before, what="the long decode under way")
    # the page is closed: the decode stops at its next piece, and says so
    wait_until(lambda: lane.abandoned == abandoned + 1, what="the long decode to stop")
    pieces = lane.long_pieces - before
    total = decode_chunks(
        load_vqvae(world["model"])[0], CodeGrid.from_json(json.loads(body)["grid"])
    )
    assert pieces < total - 1, (pieces, total)  # not decoded to the end
    with page_client(world["server"]) as http:  # and the lane is free for the next edit
        assert http.post("/models/kit/edit/decode", json={"grid": world["grid"]}).status_code == 200


# -- a long regenerate: window by window, an edit between two, stopped when its page goes --
# The kit's prior has a context of 8 steps, so a window is 4 steps: 40 steps make 10.

LONG_RANGE = {"start": 0, "end": 40, "seed": 5}


def _windows(world, grid: dict, start: int, end: int) -> int:
    from distill.inference.regenerate import regenerate_windows
    from distill.models.library import load_with_prior

    return regenerate_windows(load_with_prior(world["model"]), CodeGrid.from_json(grid), start, end)


def test_a_long_regenerate_is_drawn_in_windows_with_an_edit_between(world) -> None:
    lane = world["server"].app.state.editor_helper
    long_grid = _long_grid(world, 1.5)  # 46 steps
    windows = _windows(world, long_grid, LONG_RANGE["start"], LONG_RANGE["end"])
    assert windows == 10
    answers: dict = {}

    def regenerate_long() -> None:
        with page_client(world["server"]) as http:
            answers["long"] = http.post(
                "/models/kit/edit/regenerate", json={"grid": long_grid, **LONG_RANGE}
            )

    before = lane.long_pieces
    thread = threading.Thread(target=regenerate_long)
    thread.start()
    try:
        wait_until(lambda: lane.long_pieces > before, what="the regenerate's second window")
        with page_client(world["server"]) as http:
            small = http.post("/models/kit/edit/decode", json={"grid": world["grid"]})
        windows_before_the_edit = lane.long_pieces - before
    finally:
        thread.join()
    assert small.status_code == 200 and small.headers["content-type"] == "audio/wav"
    long = answers["long"]
    assert long.status_code == 200, long.text
    assert lane.long_pieces - before == windows - 1  # the first window is asked as an edit
    assert windows_before_the_edit < windows - 1  # answered while the regenerate went on
    drawn, old = long.json()["grid"]["codes"], long_grid["codes"]
    assert [row[40:] for row in drawn] == [row[40:] for row in old]  # after the range: kept
    assert [row[:40] for row in drawn] != [row[:40] for row in old]
    assert "silence (under -60 dBFS)" in long.json()["warning"]  # the tiny model's, per window


def test_a_regenerate_is_the_same_for_a_seed_in_the_editor_and_the_cli(world, tmp_path) -> None:
    """Three windows, drawn by the editor (one helper call each) and by `distill codes
    regenerate` (in one process): the same grid, and the same again on a second request."""
    grid = _long_grid(world, 1.5)
    span = {"start": 20, "end": 32, "seed": 11}
    assert _windows(world, grid, span["start"], span["end"]) == 3
    with page_client(world["server"]) as http:
        drawn = [http.post("/models/kit/edit/regenerate", json={"grid": grid, **span})
                 for _ in range(2)]  # fmt: skip
    assert all(d.status_code == 200 for d in drawn), drawn[0].text
    assert drawn[0].json()["grid"] == drawn[1].json()["grid"]
    codes, out = tmp_path / "long.codes.json", tmp_path / "regen.json"
    codes.write_text(json.dumps(grid))
    per_step = grid["samples_per_step"] / grid["sample_rate"]
    done = distill(world["home"], "codes", "regenerate", str(world["model"]), str(codes),
                   "--start", str(20 * per_step), "--end", str(32 * per_step), "--seed", "11",
                   "--out", str(out))  # fmt: skip
    assert done.returncode == 0 and "steps 20 to 32" in done.stdout, done.stdout + done.stderr
    assert json.loads(out.read_text())["codes"] == drawn[0].json()["grid"]["codes"]


def test_a_long_regenerate_stops_when_its_client_goes(world) -> None:
    lane, server = world["server"].app.state.editor_helper, world["server"]
    body = json.dumps({"grid": _long_grid(world, 1.5), **LONG_RANGE}).encode()
    head = (f"POST /models/kit/edit/regenerate HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.info.port}\r\nOrigin: http://127.0.0.1:{server.info.port}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    abandoned, before = lane.abandoned, lane.long_pieces
    with socket.create_connection(("127.0.0.1", server.info.port)) as client:
        client.sendall(head + body)
        wait_until(lambda: lane.long_pieces > before, what="the long regenerate under way")
    # the page is closed: the regenerate stops before its next window, and says so
    wait_until(lambda: lane.abandoned == abandoned + 1, what="the long regenerate to stop")
    assert lane.long_pieces - before < 10 - 1  # not drawn to the end
    with page_client(world["server"]) as http:  # and the lane is free for the next edit
        assert http.post("/models/kit/edit/decode", json={"grid": world["grid"]}).status_code == 200
