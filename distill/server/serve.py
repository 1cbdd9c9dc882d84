"""Run the app under uvicorn, and announce it in the discovery file while it listens."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import uvicorn
from starlette.applications import Starlette

from distill.server.app import create_app
from distill.server.discovery import ServerInfo, remove_server_file, write_server_file
from distill.server.settings import ServerSettings


def uvicorn_config(settings: ServerSettings, app: Starlette) -> uvicorn.Config:
    """uvicorn closes a WebSocket whose message is over the limit with 1009 itself."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws_max_size=settings.ws_max_message_bytes,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


async def serve(
    settings: ServerSettings,
    on_listening: Callable[[ServerInfo], None] | None = None,
    server: uvicorn.Server | None = None,
) -> None:
    """Serve until stopped (Ctrl-C, SIGTERM, or `server.should_exit`)."""
    server = server or uvicorn.Server(uvicorn_config(settings, create_app(settings)))
    serving = asyncio.create_task(server.serve())
    info = None
    try:
        while not server.started:
            if serving.done():
                await serving  # it failed to start: raise why
                return
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        info = ServerInfo(settings.host, port, settings.token, os.getpid())
        write_server_file(settings.home, info)
        if on_listening is not None:
            on_listening(info)
        await serving
    finally:
        if info is not None:
            remove_server_file(settings.home, info.pid)
        if not serving.done():
            server.should_exit = True
            await serving


class ServerThread:
    """The same server on a thread with its own event loop: for tests and benchmarks.

    `call` runs a coroutine on the server's loop (to read its store, or emit events the
    way the core does); `url` and `ws_url` reach it over real sockets.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.server = uvicorn.Server(uvicorn_config(settings, self.app))
        self.info: ServerInfo | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="distill-server", daemon=True)

    def _run(self) -> None:
        def listening(info: ServerInfo) -> None:
            self.info, self.loop = info, asyncio.get_running_loop()
            self._listening.set()

        asyncio.run(serve(self.settings, listening, self.server))

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._listening.wait(timeout=60):
            raise RuntimeError("the server did not start listening within 60 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=60)

    @property
    def url(self) -> str:
        assert self.info is not None, "enter the ServerThread first: it is not listening"
        return self.info.url

    @property
    def ws_url(self) -> str:
        assert self.info is not None, "enter the ServerThread first: it is not listening"
        return self.info.ws_url

    @property
    def core(self):
        return self.app.state.core

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        assert self.loop is not None, "enter the ServerThread first: it has no loop yet"
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)
