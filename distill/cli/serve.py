"""`distill serve`: the dashboard, the JSON API and the live streams, in one process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from distill.paths import data_home
from distill.server.settings import DEFAULT_HOST, DEFAULT_PORT, ServerSettings, is_loopback

console = Console()


def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback requires a token.")
    ] = DEFAULT_HOST,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port (0: any free one).")
    ] = DEFAULT_PORT,
    allow_root: Annotated[
        list[Path] | None,
        typer.Option(
            help="Another folder datasets may be read from (your home folder always may)."
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(help="Another Host name to answer to (behind a proxy, say)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Training runs at once.")] = 1,
) -> None:
    """Serve the dashboard. Open the address it prints."""
    from distill.server.serve import serve as run_server

    settings = ServerSettings.for_host(
        data_home(),
        host,
        port,
        allowed_hosts=tuple(allow_host or ()),
        allowed_roots=tuple(allow_root or ()),
        concurrency=concurrency,
    )

    def announce(info) -> None:
        address = f"http://{'localhost' if is_loopback(host) else host}:{info.port}/"
        if settings.token:
            address += f"?token={settings.token}"
        console.print(f"distill is serving {settings.home} at [bold]{address}[/]")
        if settings.token:
            console.print("the token in that address is required: keep it to yourself")
        console.print("Ctrl-C stops it (running jobs checkpoint first)")

    try:
        asyncio.run(run_server(settings, announce))
    except KeyboardInterrupt:
        pass
