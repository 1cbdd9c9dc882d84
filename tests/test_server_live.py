"""Live streams against a real uvicorn server and real WebSocket clients, with real runs."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path

import httpx
import pytest
from helpers import tiny_run_request, write_good_sounds
from waiting import wait_until, within_deadline
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from distill.events import TERMINAL_KINDS
from distill.server.serve import ServerThread
from distill.server.settings import ServerSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("live") / "sounds"
    write_good_sounds(folder)
    return folder


@pytest.fixture(scope="module")
def server(dataset: Path):
    home = dataset.parent / "home"
    settings = ServerSettings.for_host(home, "127.0.0.1", 0, allowed_roots=(dataset.parent,))
    with ServerThread(settings) as live:
        yield live


def submit(server: ServerThread, dataset: Path, **kwargs) -> str:
    response = httpx.post(
        server.url + "/api/runs", json=tiny_run_request(dataset, **kwargs), trust_env=False
    )
    assert response.status_code == 201, response.text
    return response.json()["run_id"]


async def read_events(url: str, limit: int | None = None) -> tuple[list[dict], int | None]:
    """JSON events until the server closes (or `limit` of them); and the close code."""
    events = []
    async with connect(url, proxy=None) as ws:
        try:
            async for message in ws:
                events.append(json.loads(message))
                if limit is not None and len(events) >= limit:
                    break
        except ConnectionClosed:
            pass
        code = ws.close_code
    return events, code


def stored(server: ServerThread, run_id: str) -> list[int]:
    return [e.seq for e in server.call(server.core.store.events(run_id))]


def test_event_stream_is_the_whole_run_in_seq_order(server: ServerThread, dataset: Path) -> None:
    run_id = submit(server, dataset)
    events, code = asyncio.run(read_events(f"{server.ws_url}/ws/runs/{run_id}/events"))
    seqs = [e["seq"] for e in events]
    assert code == 1000
    assert events[-1]["kind"] == "run_completed"
    assert seqs == list(range(1, len(seqs) + 1))
    assert seqs == stored(server, run_id)


def test_reconnecting_from_a_seq_gives_no_gap_and_no_duplicate(
    server: ServerThread, dataset: Path
) -> None:
    run_id = submit(server, dataset)
    url = f"{server.ws_url}/ws/runs/{run_id}/events"
    seen: list[int] = []
    last_kind = None
    while last_kind not in TERMINAL_KINDS:  # drop the socket after every 3 events
        after = seen[-1] if seen else 0
        # (Its close code says nothing here: the server may have sent more and closed
        # while this client stopped reading; only a terminal event ends the run.)
        events, _ = asyncio.run(read_events(f"{url}?after={after}", limit=3))
        assert events, f"the stream after seq {after} closed with nothing new"
        seen += [e["seq"] for e in events]
        last_kind = events[-1]["kind"]
    assert seen == list(range(1, len(seen) + 1))
    assert seen == stored(server, run_id)


def test_run_page_stream_pushes_fragments_then_closes(server: ServerThread, dataset: Path) -> None:
    run_id = submit(server, dataset)

    async def read_page() -> tuple[list[str], int | None]:
        messages = []
        async with connect(f"{server.ws_url}/ws/runs/{run_id}?after=0", proxy=None) as ws:
            try:
                async for message in ws:
                    messages.append(message)
            except ConnectionClosed:
                pass
            return messages, ws.close_code

    messages, code = asyncio.run(read_page())
    assert code == 1000
    assert all(m.startswith('<span id="live-seq"') for m in messages)
    joined = "\n".join(messages)
    for part in ("run-status", "run-progress", "run-chart", "run-codebook", "run-previews"):
        assert f'id="{part}"' in joined
    last_status = [m for m in messages if 'id="run-status"' in m][-1]
    assert 'data-status="completed"' in last_status
    assert '<table class="health" data-split="val">' in joined  # the codebook table filled in
    assert "clip1_levels_1.wav" in joined and "clip1_levels_2.wav" in joined


def test_page_with_a_seq_gets_only_what_changed_after_it(
    server: ServerThread, dataset: Path
) -> None:
    run_id = submit(server, dataset)
    asyncio.run(read_events(f"{server.ws_url}/ws/runs/{run_id}/events"))  # to its end
    last = stored(server, run_id)[-1]

    async def read_page(after: int) -> list[str]:
        async with connect(f"{server.ws_url}/ws/runs/{run_id}?after={after}", proxy=None) as ws:
            return [m async for m in ws]

    assert asyncio.run(read_page(last)) == []  # nothing after the last seq: closes at once
    page = asyncio.run(read_page(last - 1))  # only run_completed is new
    assert len(page) == 1
    assert f'data-seq="{last}"' in page[0]
    assert 'id="run-status"' in page[0] and 'id="run-codebook"' not in page[0]


def status_shown(message: str, run_id: str) -> str | None:
    """The status a home-page message shows for a run (its first mention), if any."""
    at = message.find(f'href="/runs/{run_id}"')
    found = re.search(r"status-(\w+)", message[at:]) if at >= 0 else None
    return found.group(1) if found else None


def test_dashboard_stream_follows_a_run_to_its_end(server: ServerThread, dataset: Path) -> None:
    async def watch() -> tuple[list[str], str]:
        messages = []
        async with connect(f"{server.ws_url}/ws/dashboard", proxy=None) as ws:
            messages.append(await ws.recv())  # the first paint, before the run
            run_id = await asyncio.to_thread(submit, server, dataset)
            while status_shown(messages[-1], run_id) != "completed":
                messages.append(await ws.recv())
            return messages, run_id

    messages, run_id = within_deadline(watch(), what="the run page's stream")
    assert 'id="active-runs"' in messages[0] and 'id="recent-runs"' in messages[0]
    assert status_shown(messages[0], run_id) is None
    shown = [status_shown(m, run_id) for m in messages[1:]]
    assert set(shown) <= {"queued", "running", "completed"}, shown
    assert "Nothing is training" in messages[-1]  # gone from the active runs, in the recent
    wait_until(lambda: not server.core.runner.running, what="the run to end")


def test_oversized_message_closes_with_1009(server: ServerThread) -> None:
    async def send_big() -> int | None:
        async with connect(f"{server.ws_url}/ws/dashboard", proxy=None, max_size=None) as ws:
            await ws.recv()
            await ws.send("x" * (server.settings.ws_max_message_bytes + 1))
            try:
                while True:
                    await ws.recv()
            except ConnectionClosed:
                pass
            return ws.close_code

    assert asyncio.run(send_big()) == 1009


def test_malformed_messages_get_an_error_and_the_socket_stays(server: ServerThread) -> None:
    async def talk() -> list[dict]:
        replies = []
        async with connect(f"{server.ws_url}/ws/dashboard", proxy=None) as ws:
            await ws.recv()  # first paint
            for message in (
                "not json",
                "[1, 2]",
                '{"type": "launch"}',
                b"\xff\xfe",
                '{"type": "ping"}',
            ):
                await ws.send(message)
                while True:
                    reply = await ws.recv()
                    if reply.startswith("{"):
                        replies.append(json.loads(reply))
                        break
        return replies

    replies = asyncio.run(talk())
    assert [r["type"] for r in replies] == ["error", "error", "error", "error", "pong"]
    assert "unknown message type 'launch'" in replies[2]["message"]


def test_unknown_run_stream_is_refused_with_a_reason(server: ServerThread) -> None:
    events, code = asyncio.run(read_events(f"{server.ws_url}/ws/runs/no-such-run/events"))
    assert events == [] and code == 1008


def stalled_client(server: ServerThread, path: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.info.port))
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.info.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    return sock


def test_a_client_that_stops_reading_is_dropped_and_slows_nobody(server: ServerThread) -> None:
    """2,000 large events into one run: the stalled socket is dropped, the reader gets all."""
    from distill.events import CheckpointSaved, RunCompleted

    core = server.core
    run_id = "flood-run"

    async def create() -> None:
        await core.store.create_run(run_id, "vqvae", "/nowhere", {})

    server.call(create())
    stats = server.app.state.streams.stats
    dropped_before = stats.dropped
    stalled = stalled_client(server, f"/ws/runs/{run_id}/events")
    wait_until(lambda: stats.clients >= 1, what="the stalled client to connect")

    async def reader() -> list[int]:
        async with connect(f"{server.ws_url}/ws/runs/{run_id}/events", proxy=None) as ws:
            ready.set()
            return [json.loads(m)["seq"] async for m in ws]

    async def flood() -> None:
        for n in range(2000):
            core.emit(run_id, CheckpointSaved(n, "x" * 8000))  # as a worker's events arrive
        core.emit(run_id, RunCompleted(0, 0.0, "", 0.0))

    async def scenario() -> list[int]:
        task = asyncio.create_task(reader())
        await ready.wait()
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(flood(), server.loop))
        return await task

    ready = asyncio.Event()
    try:
        seqs = asyncio.run(scenario())
        wait_until(lambda: stats.dropped > dropped_before, what="the stalled client to be dropped")
    finally:
        stalled.close()
    assert seqs == list(range(1, 2002))
    # A late follower replays the whole burst from the store, far more than its outbox holds.
    events, code = asyncio.run(read_events(f"{server.ws_url}/ws/runs/{run_id}/events"))
    assert [e["seq"] for e in events] == list(range(1, 2002)) and code == 1000
