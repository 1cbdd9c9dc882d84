"""The guard, uploads, dataset folders and file routes, against a real uvicorn server."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path

import httpx
import pytest
from helpers import write_good_sounds
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings

TOKEN = "s3cret-token"


def raw_request(
    server: ServerThread, method: str, path: str, headers: dict | None = None, body: bytes = b""
) -> tuple[int, str, dict]:
    """A request with the path sent byte for byte (httpx would normalise `..` away)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.info.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        all_headers = {"Host": f"127.0.0.1:{server.info.port}", **(headers or {})}
        if body:
            all_headers["Content-Length"] = str(len(body))
        for name, value in all_headers.items():
            connection.putheader(name, value)
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace"), dict(response.headers)
    finally:
        connection.close()


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("security")
    allowed = base / "allowed"
    write_good_sounds(allowed / "sounds", count=2)
    outside = base / "outside"
    write_good_sounds(outside, count=2)
    (allowed / "escape").symlink_to(outside)
    return {"home": base / "home", "allowed": allowed, "outside": outside}


@pytest.fixture(scope="module")
def server(roots):
    settings = ServerSettings.for_host(
        roots["home"], "127.0.0.1", 0, allowed_roots=(roots["allowed"],),
        max_upload_files=3, max_upload_bytes=200_000,
    )  # fmt: skip
    with ServerThread(settings) as live:
        yield live


@pytest.fixture(scope="module")
def token_server(roots):
    settings = ServerSettings.for_host(roots["home"] / "t", "127.0.0.1", 0, token=TOKEN)
    with ServerThread(settings) as live:
        yield live


# -- binding and the token ------------------------------------------------------------------


def test_loopback_needs_no_token_and_any_other_address_gets_one(tmp_path: Path) -> None:
    assert ServerSettings.for_host(tmp_path, "127.0.0.1").token is None
    assert ServerSettings.for_host(tmp_path, "localhost").token is None
    for host in ("0.0.0.0", "192.168.1.20", "::"):
        token = ServerSettings.for_host(tmp_path, host).token
        assert token and len(token) >= 24
    assert (
        ServerSettings.for_host(tmp_path, "0.0.0.0").token
        != ServerSettings.for_host(tmp_path, "0.0.0.0").token
    )


def test_default_server_answers_pages_without_token(server: ServerThread) -> None:
    response = httpx.get(server.url + "/", trust_env=False)
    assert response.status_code == 200
    assert "Train a new model" in response.text


@pytest.mark.parametrize("path", ["/", "/runs", "/models", "/api/runs", "/api/health"])
def test_token_is_required_for_pages_and_api(token_server: ServerThread, path: str) -> None:
    refused = httpx.get(token_server.url + path, trust_env=False)
    assert refused.status_code == 401
    assert "token" in refused.text
    wrong = httpx.get(
        token_server.url + path, headers={"Authorization": "Bearer nope"}, trust_env=False
    )
    assert wrong.status_code == 401
    allowed = httpx.get(
        token_server.url + path, headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False
    )
    assert allowed.status_code == 200


def test_token_in_the_address_becomes_a_cookie(token_server: ServerThread) -> None:
    with httpx.Client(base_url=token_server.url, trust_env=False) as client:
        first = client.get(f"/runs?token={TOKEN}&status=failed")
        assert first.status_code == 303
        assert first.headers["location"] == "/runs?status=failed"  # the token leaves the URL
        assert "httponly" in first.headers["set-cookie"].lower()
        assert client.get("/models").status_code == 200  # the cookie carries on


def test_token_is_required_for_websockets(token_server: ServerThread) -> None:
    async def attempt(headers: dict) -> None:
        async with connect(
            token_server.ws_url + "/ws/dashboard", additional_headers=headers, proxy=None
        ) as ws:
            await ws.recv()

    import asyncio

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(attempt({}))
    assert refused.value.response.status_code == 403
    asyncio.run(attempt({"Authorization": f"Bearer {TOKEN}"}))


def test_serve_off_loopback_prints_addresses_a_browser_can_open_and_requires_the_token(
    tmp_path: Path,
) -> None:
    """The real command, bound to every address: it prints this machine's name and
    addresses, never 0.0.0.0, each with the token. Only this machine is ever contacted."""
    import re
    import socket
    import subprocess
    import sys

    from waiting import wait_until

    from distill.server.discovery import read_server_file

    home = tmp_path / "home"
    process = subprocess.Popen(
        [sys.executable, "-m", "distill.cli.main", "serve", "--host", "0.0.0.0", "--port", "0"],
        env={**os.environ, "DISTILL_HOME": str(home), "COLUMNS": "300"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        info = wait_until(lambda: read_server_file(home), what="the server file")
        assert info.token
        announced = []
        for line in process.stdout:  # the announcement ends with how to stop it
            announced.append(line)
            if "Ctrl-C" in line:
                break
        output = "".join(announced)
        addresses = re.findall(r"http://(\S+?):(\d+)/\?token=(\S+)", output)
        assert "0.0.0.0" not in output
        assert {(port, token) for _, port, token in addresses} == {(str(info.port), info.token)}
        hosts = [host for host, _, _ in addresses]
        assert hosts[0] == socket.gethostname() and hosts[-1] == "127.0.0.1"
        for host in hosts:  # each is opened here as a browser would (the name by its Host)
            ip = "127.0.0.1" if host == socket.gethostname() else host
            url = f"http://{ip}:{info.port}/?token={info.token}"
            with httpx.Client(trust_env=False, headers={"Host": f"{host}:{info.port}"}) as browser:
                assert browser.get(url).status_code == 303, host  # the token becomes a cookie
                assert browser.get(url.split("?")[0]).status_code == 200, host

        base = f"http://127.0.0.1:{info.port}"
        assert httpx.get(base + "/api/runs", trust_env=False).status_code == 401
        authorised = {"Authorization": f"Bearer {info.token}"}
        assert httpx.get(base + "/api/runs", headers=authorised, trust_env=False).status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=60)
    assert not (home / "server.json").exists()  # removed on the way out


# -- Host and Origin --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example", ""])
def test_unknown_host_header_is_refused(server: ServerThread, host: str) -> None:
    status, body, _ = raw_request(server, "GET", "/", {"Host": host})
    assert status == 400
    assert "Host" in body


def test_loopback_host_names_are_accepted(server: ServerThread) -> None:
    port = server.info.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert raw_request(server, "GET", "/", {"Host": host})[0] == 200


def test_wildcard_bind_accepts_ip_literals_but_not_names(tmp_path: Path) -> None:
    from starlette.datastructures import Headers  # noqa: F401 - the guard's own type

    from distill.server.security import Guard

    guard = Guard(app=None, settings=ServerSettings.for_host(tmp_path, "0.0.0.0", 80))
    assert guard.host_allowed("192.168.1.20:80")
    assert guard.host_allowed("[fe80::1]:80")
    assert not guard.host_allowed("rebind.attacker.example:80")
    allowed = ServerSettings.for_host(tmp_path, "0.0.0.0", 80, allowed_hosts=("distill.lan",))
    assert Guard(app=None, settings=allowed).host_allowed("distill.lan:80")


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1"])
def test_cross_origin_state_change_is_refused(server: ServerThread, roots, origin: str) -> None:
    body = json.dumps({"dataset": str(roots["allowed"] / "sounds")}).encode()
    status, text, _ = raw_request(
        server, "POST", "/api/runs", {"Origin": origin, "Content-Type": "application/json"}, body
    )
    assert status == 403
    assert "cross-origin" in text
    status, _, _ = raw_request(server, "POST", "/models/x/delete", {"Origin": origin})
    assert status == 403


def test_cross_site_fetch_metadata_is_refused(server: ServerThread) -> None:
    status, _, _ = raw_request(server, "POST", "/runs/x/cancel", {"Sec-Fetch-Site": "cross-site"})
    assert status == 403


def test_same_origin_post_passes_the_guard(server: ServerThread) -> None:
    origin = f"http://127.0.0.1:{server.info.port}"
    status, body, _ = raw_request(server, "POST", "/api/runs/nope/cancel", {"Origin": origin})
    assert status == 409  # reached the route: there is no such run
    assert "no run" in body


def test_cross_origin_websocket_is_refused(server: ServerThread) -> None:
    import asyncio

    async def attempt(origin: str) -> None:
        async with connect(server.ws_url + "/ws/dashboard", origin=origin, proxy=None) as ws:
            await ws.recv()

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(attempt("http://evil.example"))
    assert refused.value.response.status_code == 403
    asyncio.run(attempt(f"http://127.0.0.1:{server.info.port}"))


# -- dataset folders ----------------------------------------------------------------------------


def scan(server: ServerThread, folder: str) -> httpx.Response:
    return httpx.post(
        server.url + "/new/scan", data={"dataset": folder}, trust_env=False, timeout=120
    )


def test_folder_inside_an_allowed_root_is_scanned(server: ServerThread, roots) -> None:
    response = scan(server, str(roots["allowed"] / "sounds"))
    assert response.status_code == 200
    assert "<strong>2</strong> usable files" in response.text


@pytest.mark.parametrize(
    "folder, expected",
    [
        ("/etc", "outside the folders"),
        ("{outside}", "outside the folders"),
        ("{allowed}/escape", "outside the folders"),  # a symlink out of the root
        ("{allowed}/sounds/../../outside", "outside the folders"),
        ("sounds", "not an absolute path"),
        ("", "give the path"),
        ("{allowed}/missing", "not a folder"),
    ],
)
def test_folder_paths_are_resolved_and_confined(
    server: ServerThread, roots, folder: str, expected: str
) -> None:
    path = folder.format(allowed=roots["allowed"], outside=roots["outside"])
    response = scan(server, path)
    assert response.status_code in (400, 403)
    assert expected in response.text


def test_training_outside_the_roots_is_refused_by_the_api(server: ServerThread, roots) -> None:
    response = httpx.post(
        server.url + "/api/runs", json={"dataset": str(roots["outside"])}, trust_env=False
    )
    assert response.status_code == 403
    assert "outside the folders" in response.json()["error"]
    assert server.call(server.core.store.runs()) == []


# -- uploads ------------------------------------------------------------------------------------


def upload(server: ServerThread, files: list[tuple[str, bytes]]) -> httpx.Response:
    parts = [("files", (name, data, "audio/wav")) for name, data in files]
    return httpx.post(server.url + "/new/upload", files=parts, trust_env=False, timeout=120)


def test_upload_is_saved_under_the_data_directory_and_scanned(server: ServerThread, roots) -> None:
    sounds = sorted((roots["allowed"] / "sounds").iterdir())
    response = upload(server, [("../../evil/" + p.name, p.read_bytes()) for p in sounds])
    assert response.status_code == 200, response.text
    assert "<strong>2</strong> usable files" in response.text
    uploads = server.settings.uploads_dir
    saved = sorted(p.name for p in uploads.rglob("*") if p.is_file())
    assert saved == sorted(p.name for p in sounds)  # the client's folders are dropped
    assert not (roots["home"].parent / "evil").exists()


def test_too_many_files_get_a_clear_error(server: ServerThread) -> None:
    response = upload(server, [(f"f{i}.wav", b"RIFF") for i in range(4)])
    assert response.status_code == 400
    assert "Too many files" in response.text or "too many files" in response.text


def test_too_large_upload_gets_a_clear_error(server: ServerThread) -> None:
    response = upload(server, [("big.wav", b"\0" * 300_000)])
    assert response.status_code == 413
    assert "larger than this server accepts" in response.text


def test_too_large_upload_without_length_is_cut_off(server: ServerThread) -> None:
    def chunks():
        boundary = b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.wav"\r\n\r\n'
        yield boundary
        for _ in range(40):
            yield b"\0" * 10_000

    response = httpx.post(
        server.url + "/new/upload",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
        trust_env=False,
    )
    assert response.status_code == 413


# -- file routes --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_folder(server: ServerThread, roots) -> Path:
    folder = server.settings.home / "runs" / "20260101-000000-abcd" / "previews"
    folder.mkdir(parents=True)
    (folder / "clip1_original.wav").write_bytes(b"RIFF-real-preview")
    secret = roots["outside"] / "secret.wav"
    secret.write_bytes(b"RIFF-secret")
    (folder / "link.wav").symlink_to(secret)
    return folder


def test_preview_files_are_served(server: ServerThread, run_folder: Path) -> None:
    status, body, _ = raw_request(
        server, "GET", "/runs/20260101-000000-abcd/files/previews/clip1_original.wav"
    )
    assert status == 200
    assert body == "RIFF-real-preview"


@pytest.mark.parametrize(
    "path",
    [
        "/runs/20260101-000000-abcd/files/../../../distill.sqlite",
        "/runs/20260101-000000-abcd/files/previews/../../../distill.sqlite",
        "/runs/20260101-000000-abcd/files/%2e%2e/%2e%2e/distill.sqlite",
        "/runs/20260101-000000-abcd/files/previews%2f..%2f..%2fsecret.wav",
        "/runs/20260101-000000-abcd/files/..%2f..%2f..%2fdistill.sqlite",
        "/runs/20260101-000000-abcd/files/%2fetc%2fpasswd",
        "/runs/20260101-000000-abcd/files//etc/passwd",
        "/runs/20260101-000000-abcd/files/previews/..%5c..%5csecret.wav",
        "/runs/20260101-000000-abcd/files/previews/link.wav",  # a symlink out of the folder
        "/runs/..%2f..%2fmodels/files/x.wav",
        "/runs/20260101-000000-abcd/files/checkpoint.distill",  # not a preview
    ],
)
def test_file_routes_cannot_leave_the_run_folder(
    server: ServerThread, run_folder: Path, path: str
) -> None:
    status, body, _ = raw_request(server, "GET", path)
    assert status in (400, 404)
    assert "secret" not in body and "SQLite" not in body


@pytest.mark.parametrize(
    "path",
    ["/models/..%2f..%2fdistill/download", "/models/../distill/download", "/models/%2e%2e/download",
     "/models/.hidden/download", "/models/x%00/download"],
)  # fmt: skip
def test_model_download_cannot_leave_the_library(server: ServerThread, path: str) -> None:
    status, _, _ = raw_request(server, "GET", path)
    assert status in (400, 404)


def test_a_long_uploaded_name_keeps_its_extension(server: ServerThread, roots) -> None:
    sound = sorted((roots["allowed"] / "sounds").iterdir())[0]
    long_name = "a very long name " * 12 + sound.suffix  # 204 characters and the extension
    response = upload(server, [(long_name, sound.read_bytes())])
    assert response.status_code == 200, response.text
    assert "<strong>1</strong> usable files" in response.text and "skipped" not in response.text
    saved = [p for p in server.settings.uploads_dir.rglob("*") if p.stat().st_size and
             p.name.startswith("a very long name")]  # fmt: skip
    assert len(saved) == 1 and saved[0].suffix == sound.suffix and len(saved[0].name) == 120


def test_two_servers_on_one_host_keep_their_own_token_cookies(tmp_path: Path) -> None:
    """Cookies are kept per host, not per port, by browsers and by httpx alike: with one
    cookie name, logging in to the second server logged the first one out."""
    servers = [
        ServerThread(ServerSettings.for_host(tmp_path / name, "127.0.0.1", 0, token=name))
        for name in ("token-a", "token-b")
    ]
    with servers[0] as first, servers[1] as second, httpx.Client(trust_env=False) as browser:
        for server in (first, second):
            login = browser.get(f"{server.url}/?token={server.settings.token}")
            assert login.status_code == 303
            assert login.headers["set-cookie"].startswith(f"distill_token_{server.info.port}=")
        for server in (first, second):
            assert browser.get(f"{server.url}/runs").status_code == 200, server.url
