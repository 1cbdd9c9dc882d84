"""`distill serve`: the dashboard, the JSON API and the live streams, in one process."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from distill.cli.follow import ThreadsOption
from distill.core.cluster_config import CLUSTER_ENV, ClusterConfig, ClusterError
from distill.paths import data_home
from distill.server.settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ServerSettings,
    browser_hosts,
)
from distill.threads import requested_threads

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
            help="Another folder datasets may be read from (your user folder ~ always may)."
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(help="Another Host name to answer to (behind a proxy, say)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Training runs at once on this machine (not with --cluster).")
    ] = 1,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="Run every job on this Dask scheduler (tcp:// or tls://) instead of here;"
            f" default: ${CLUSTER_ENV}.",
            show_default=False,
        ),
    ] = None,
    tls_ca_file: Annotated[
        Path | None, typer.Option(help="With a tls:// --cluster: the CA certificate.")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="With a tls:// --cluster: this client's certificate.")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="With a tls:// --cluster: this client's private key.")
    ] = None,
    threads: ThreadsOption = None,
) -> None:
    """Serve the dashboard. Open the address it prints."""
    from distill.server.serve import serve as run_server

    _refuse_a_busy_port(host, port)
    requested_threads(threads)  # the workers and the helper read it as they start
    try:
        cluster_config = ClusterConfig.from_options(
            cluster, *(str(p) if p else None for p in (tls_ca_file, tls_cert, tls_key))
        )
    except ClusterError as error:  # a bad address or option: the user's to fix
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    try:
        if cluster_config is not None:
            from distill.core.cluster import check_reachable

            warning = cluster_config.warning()
            if warning:
                console.print(f"[yellow]warning:[/] {warning}")
            check_reachable(cluster_config)
    except ClusterError as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(1) from None
    settings = ServerSettings.for_host(
        data_home(),
        host,
        port,
        allowed_hosts=tuple(allow_host or ()),
        allowed_roots=tuple(allow_root or ()),
        concurrency=concurrency,
        cluster=cluster_config,
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
        if cluster_config is not None:
            console.print(f"jobs run on the Dask cluster at [bold]{cluster_config.address}[/]")
        console.print("Ctrl-C stops it (running jobs checkpoint first)")

    try:
        asyncio.run(run_server(settings, announce))
    except KeyboardInterrupt:
        pass
    except SystemExit as error:  # uvicorn's own exit when binding failed (a race with above)
        if error.code == UVICORN_STARTUP_FAILED:
            _refuse_a_busy_port(host, port)
        raise


UVICORN_STARTUP_FAILED = 3  # uvicorn's sys.exit code when its server cannot start


def _refuse_a_busy_port(host: str, port: int) -> None:
    """Exit with a message, not uvicorn's traceback, when the port is taken; name the
    distill server of this data directory when it is the one holding it (server.json)."""
    if port == 0 or _can_bind(host, port):
        return
    from distill.server.discovery import read_server_file

    console.print(f"[bold red]error:[/] port {port} is in use on {host}")
    running = read_server_file(data_home())
    if running is not None:
        console.print(
            f"a distill server for this data directory ({data_home()}) already runs at "
            f"[bold]{running.url}/[/] (pid {running.pid}): open that, or stop it first"
        )
    console.print("try another port: `distill serve --port 0` picks a free one")
    raise typer.Exit(2)


def _can_bind(host: str, port: int) -> bool:
    """Whether a listening socket could take `port` now (uvicorn binds the same way)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
