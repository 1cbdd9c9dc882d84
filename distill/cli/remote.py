"""The CLI as a client of a running `distill serve`: submit over HTTP, follow its WebSocket.

`distill train`, `distill train-prior`, `distill runs follow/cancel/resume` look for a live server through the
discovery file first; with one, the run is the server's (it shows in the dashboard and
goes on when the command returns); without one, they run an in-process core as before.
Events arrive as JSON and become the same `Event`s the in-process core yields, so one
renderer (cli/render.py) draws both.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from distill.cli.follow import (
    EXIT_BAD_INPUT,
    bad_input,
    exit_code,
    render_stream,
    run_in_process,
    stopping_words,
)
from distill.events import TERMINAL_KINDS, Event
from distill.paths import data_home
from distill.server.discovery import ServerInfo, read_server_file
from distill.training.specs import RunRequest

RESYNC = 4000  # the server dropped us for falling behind: reconnect from the last seq
MAX_RECONNECTS = 5  # in a row without an event in between


class RemoteError(Exception):
    """The server refused a request; the message is its reason."""


class Remote:
    """One running server, found through its discovery file."""

    def __init__(self, info: ServerInfo) -> None:
        self.info = info
        self.headers = {"Authorization": f"Bearer {info.token}"} if info.token else {}

    def _client(self, timeout: float = 30.0) -> httpx.AsyncClient:
        # trust_env=False: a proxy set in the environment must not see a loopback request.
        return httpx.AsyncClient(
            base_url=self.info.url, headers=self.headers, timeout=timeout, trust_env=False
        )

    async def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        async with self._client() as client:
            return _answer(await client.post(path, json=body or {}))

    async def run(self, run_id: str) -> dict[str, Any]:
        """The run as the server's store has it (status, error, ...)."""
        async with self._client() as client:
            return _answer(await client.get(f"/api/runs/{run_id}"))

    async def alive(self) -> bool:
        try:
            async with self._client(timeout=3.0) as client:
                response = await client.get("/api/health")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def submit(self, request: RunRequest) -> str:
        """Queue a run of the request's type on the server; returns its run id."""
        body = {"run_type": request.run_type, **request.to_dict()}
        return (await self._post("/api/runs", body))["run_id"]

    async def cancel(self, run_id: str, keep_best: bool = False) -> None:
        """Stop the run; with `keep_best`, its best epoch so far becomes its model."""
        keep = "?keep_best=1" if keep_best else ""
        await self._post(f"/api/runs/{run_id}/cancel{keep}")

    async def resume(self, run_id: str) -> int:
        """Resume the run; returns the seq its resumed attempt's events follow."""
        return (await self._post(f"/api/runs/{run_id}/resume"))["after_seq"]

    async def follow(self, run_id: str, after_seq: int = 0) -> AsyncIterator[Event]:
        """Every event after `after_seq`, to the run's end; reconnects from the last seq."""
        last = after_seq
        failures = 0
        while True:
            url = f"{self.info.ws_url}/ws/runs/{run_id}/events?after={last}"
            try:
                async with connect(url, additional_headers=self.headers, proxy=None) as ws:
                    async for message in ws:
                        data = Event(**_event_fields(message))
                        if data.seq <= last:
                            continue
                        failures = 0
                        last = data.seq
                        yield data
                        if data.kind in TERMINAL_KINDS:
                            return
                    code, reason = ws.close_code, ws.close_reason
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                reason = closed.rcvd.reason if closed.rcvd else "connection lost"
            except InvalidStatus as error:
                raise RemoteError(f"the server refused the stream ({error})") from None
            except OSError as error:
                code, reason = None, str(error)
            if code == 1000:
                return  # the run had ended before our seq
            if code == 1008:
                raise RemoteError(reason)
            failures += 1
            if failures > MAX_RECONNECTS or (code != RESYNC and not await self.alive()):
                raise RemoteError(f"lost the server's event stream: {reason}")


def _answer(response: httpx.Response) -> dict[str, Any]:
    """The server's JSON answer; its error, when it refused, as a RemoteError."""
    try:
        data = response.json()
    except ValueError:  # not JSON (a proxy's page, a 500): its words, not a traceback
        data = None
    if not isinstance(data, dict):
        text = " ".join(response.text.split())[:200]
        raise RemoteError(f"HTTP {response.status_code}: {text or 'no answer'}")
    if response.status_code >= 400:
        raise RemoteError(data.get("error", f"HTTP {response.status_code}"))
    return data


async def run_on_server(
    remote: Remote,
    request: RunRequest,
    render,
    follow: bool,
    json_output: bool,
    console: Console,
    keep_best: bool = True,
) -> int:
    """Submit to the running server and follow its stream (or print the run id and
    return): the run is the server's own, so it shows in the dashboard too. A Ctrl-C
    stops it, as run_in_process does."""
    try:
        run_id = await remote.submit(request)
    except RemoteError as error:
        # Say whose refusal it is: without a server the same command would have run here.
        console.print(
            f"[bold red]error:[/] the distill server at {remote.info.url} refused: {error}"
        )
        return EXIT_BAD_INPUT
    if not follow:
        print(json.dumps({"run_id": run_id}) if json_output else run_id)
        return 0
    if not json_output:
        console.print(f"[dim]run {run_id} on the server at {remote.info.url}[/]")
    try:
        terminal = await render_stream(
            remote.follow(run_id), render, lambda: remote.cancel(run_id, keep_best), console,
            stopping_words(keep_best),
        )  # fmt: skip
    except RemoteError as error:
        console.print(f"[bold red]error:[/] {error}")
        return EXIT_BAD_INPUT
    return exit_code(terminal)


def _event_fields(message: str | bytes) -> dict[str, Any]:
    data = json.loads(message)
    return {k: data[k] for k in ("run_id", "seq", "kind", "payload", "ts")}


def find_server(home: Path) -> Remote | None:
    """The live server for this data directory, or None."""
    import asyncio

    info = read_server_file(home)
    if info is None:
        return None
    remote = Remote(info)
    return remote if asyncio.run(remote.alive()) else None


def submit_and_follow(
    request: RunRequest,
    render,
    console: Console,
    *,
    follow: bool = True,
    json_output: bool = False,
    keep_best: bool = True,
    through_server: bool = True,
) -> NoReturn:
    """A command's run, here or through a server: on the running `distill serve` when
    there is one (so the dashboard shows it), else on a core in this process, which
    cannot outlive the command (so --no-follow needs the server). Exits with the run's
    exit code."""
    home = data_home()
    remote = find_server(home) if through_server else None
    if remote is not None:
        raise typer.Exit(
            asyncio.run(
                run_on_server(remote, request, render, follow, json_output, console, keep_best)
            )
        )
    if not follow:
        bad_input(
            console,
            "--no-follow needs a running `distill serve` to keep the run going "
            "after this command returns; start one, or follow the run here",
        )
    raise typer.Exit(asyncio.run(run_in_process(home, request, render, console, keep_best)))
