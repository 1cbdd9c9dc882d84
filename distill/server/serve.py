"""Run the app under uvicorn, and announce it in the discovery file while it listens."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import uvicorn

from distill.server.app import create_app
from distill.server.discovery import ServerInfo, remove_server_file, write_server_file
from distill.server.settings import ServerSettings


def uvicorn_config(settings: ServerSettings) -> uvicorn.Config:
    """uvicorn closes a WebSocket whose message is over the limit with 1009 itself."""
    return uvicorn.Config(
        create_app(settings),
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
    server = server or uvicorn.Server(uvicorn_config(settings))
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
