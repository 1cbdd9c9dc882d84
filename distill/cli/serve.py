"""`distill serve`: the dashboard, the JSON API and the live streams, in one process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from distill.paths import data_home
from distill.server.settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ServerSettings,
    browser_hosts,
)

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
        query = f"?token={settings.token}" if settings.token else ""
        addresses = [f"http://{name}:{info.port}/{query}" for name in browser_hosts(host)]
        if len(addresses) == 1:
            console.print(f"distill is serving {settings.home} at [bold]{addresses[0]}[/]")
        else:
            console.print(f"distill is serving {settings.home} at any of:")
            for address in addresses:
                console.print(f"  [bold]{address}[/]", soft_wrap=True)
        if settings.token:
            console.print("the token in that address is required: keep it to yourself")
        console.print("Ctrl-C stops it (running jobs checkpoint first)")

    try:
        asyncio.run(run_server(settings, announce))
    except KeyboardInterrupt:
        pass
