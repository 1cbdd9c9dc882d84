"""Requests that carry what no run has: numbers past any bound, statuses that do not
exist. Each is refused with a 400 (or a clean WebSocket close) and its reason, the same
way everywhere: the CLI, the API and the pages. A real server, real processes."""

from __future__ import annotations

import asyncio
import html
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from distill.events import RUN_STATUSES
from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings

HUGE = [str(2**63 - 1), str(2**70), "9" * 5000, "-1", "1e3", "x"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("bad-requests") / "home"
    with ServerThread(ServerSettings.for_host(home, "127.0.0.1", 0)) as live:
        asyncio.run_coroutine_threadsafe(
            live.core.store.create_run("r1", "vqvae", "/sounds", {}), live.loop
        ).result(30)
        yield live


def get(server: ServerThread, path: str, **params) -> httpx.Response:
    return httpx.get(server.url + path, params=params, trust_env=False)


@pytest.mark.parametrize("page", ["9223372036854775807", str(2**70), "9" * 5000, "0", "x"])
def test_a_page_number_past_the_bounds_is_a_400(server: ServerThread, page: str) -> None:
    response = get(server, "/runs", page=page)
    assert response.status_code == 400
    assert "page must be" in response.text
    assert get(server, "/runs", page="2").status_code == 200  # past the last page: empty


@pytest.mark.parametrize("after", HUGE)
def test_a_websocket_after_past_the_bounds_closes_with_the_reason(
    server: ServerThread, after: str
) -> None:
    async def close_of(path: str) -> tuple[int, str]:
        async with connect(f"{server.ws_url}{path}?after={after}", proxy=None) as ws:
            with pytest.raises(ConnectionClosed) as closed:  # a deadline, not a speed check
                await asyncio.wait_for(ws.recv(), 60)
        return closed.value.rcvd.code, closed.value.rcvd.reason

    for path in ("/ws/runs/r1/events", "/ws/runs/r1"):
        code, reason = asyncio.run(close_of(path))
        assert code == 1008  # policy violation, with the reason: not 1011, a server error
        assert reason.startswith("after")


def test_json_numbers_past_the_bounds_are_a_400(server: ServerThread) -> None:
    body = {"dataset": "/tmp", "settings": {"epochs": 2**70}}
    response = httpx.post(server.url + "/api/runs", json=body, trust_env=False)
    assert response.status_code == 400
    assert "too large" in response.json()["error"]
    nan = b'{"dataset": "/tmp", "overrides": {"commitment_weight": NaN}}'
    response = httpx.post(server.url + "/api/runs", content=nan, trust_env=False)
    assert response.status_code == 400 and "finite" in response.json()["error"]


def test_an_unknown_status_is_refused_by_the_api_and_the_page(server: ServerThread) -> None:
    for path in ("/api/runs", "/runs"):
        response = get(server, path, status="bogus")
        assert response.status_code == 400, path
        text = html.unescape(response.text)
        assert "unknown status 'bogus'" in text and "interrupted" in text
    known = get(server, "/api/runs", status="queued")
    assert known.status_code == 200 and [r["run_id"] for r in known.json()] == ["r1"]
    for status in RUN_STATUSES:
        assert get(server, "/api/runs", status=status).status_code == 200


def test_an_unknown_status_is_refused_by_the_cli(tmp_path: Path) -> None:
    def runs(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "distill.cli.main", "runs", *args],
            env={**os.environ, "DISTILL_HOME": str(tmp_path / "home"), "COLUMNS": "200"},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    refused = runs("--status", "bogus")
    assert refused.returncode == 2
    assert "unknown status 'bogus'" in refused.stdout and "interrupted" in refused.stdout
    assert runs("--status", "failed", "--json").returncode == 0
