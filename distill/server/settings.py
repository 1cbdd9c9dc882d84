"""How one `distill serve` is configured: where it listens, who may talk to it, what it accepts.

Plain data, built once by the CLI (or a test) and read by the security middleware, the
upload and folder routes, and the discovery file.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from distill.core.cluster_config import ClusterConfig, is_loopback
from distill.models.model_file import MAX_MODEL_FILE_BYTES

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_UPLOAD_FILES = 500  # the most sounds distill is meant for
MAX_UPLOAD_BYTES = 1024**3  # one upload request, all files together
MAX_MODEL_UPLOAD_BYTES = MAX_MODEL_FILE_BYTES  # one imported .distill file, as the CLI's
WS_MAX_MESSAGE_BYTES = 64 * 1024  # a client never needs to send more than a small JSON


WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # bind to every address: not an address to open


def browser_hosts(bind: str) -> list[str]:
    """Host parts of the addresses a browser can open for a server bound to `bind`.

    A wildcard bind is no address: this machine's name and its own addresses are (the
    Host check accepts both), then loopback for a browser on this machine.
    """
    if is_loopback(bind):
        return ["localhost"]
    if bind not in WILDCARD_HOSTS:
        return [_bracketed(bind)]
    name = socket.gethostname()
    family = socket.AF_INET if bind == "0.0.0.0" else socket.AF_UNSPEC
    try:
        found = socket.getaddrinfo(name, None, family, socket.SOCK_STREAM)
    except OSError:  # a name this machine cannot resolve: its addresses are unknown
        found = []
    addresses = dict.fromkeys(str(info[4][0]) for info in found)
    own = [_bracketed(address) for address in addresses if not is_loopback(address)]
    return [name, *own, "127.0.0.1" if bind == "0.0.0.0" else "[::1]"]


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class ServerSettings:
    """One server's configuration; `for_host` fills in the token and allowlists."""

    home: Path  # the data directory
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None  # required on every request when set (always off loopback)
    allowed_hosts: tuple[str, ...] = ()  # Host header names accepted besides the defaults
    allowed_roots: tuple[Path, ...] = ()  # folders a dataset path may lie under
    max_upload_files: int = MAX_UPLOAD_FILES
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_model_upload_bytes: int = MAX_MODEL_UPLOAD_BYTES
    ws_max_message_bytes: int = WS_MAX_MESSAGE_BYTES
    concurrency: int = 1  # training runs at once (on this machine; a cluster has its own)
    cluster: ClusterConfig | None = None  # run jobs on this Dask cluster, not a local pool

    @classmethod
    def for_host(
        cls,
        home: Path,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        token: str | None = None,
        allowed_hosts: tuple[str, ...] = (),
        allowed_roots: tuple[Path, ...] = (),
        **limits,
    ) -> ServerSettings:
        """Off loopback a token is required: the one given, else a fresh random one.

        Datasets may always be read from the user's folder (`~`) and the data directory
        (uploads land there); `allowed_roots` and `DISTILL_ALLOWED_ROOTS`
        (os.pathsep-separated) add more. `DISTILL_ALLOWED_HOSTS` (comma-separated) adds
        Host names, for deployments behind a proxy.
        """
        if token is None and not is_loopback(host):
            token = secrets.token_urlsafe(24)
        env_roots = [p for p in os.environ.get("DISTILL_ALLOWED_ROOTS", "").split(os.pathsep) if p]
        given: tuple[str | Path, ...] = (Path.home(), home, *allowed_roots, *env_roots)
        roots = tuple(dict.fromkeys(Path(r).expanduser().resolve() for r in given))
        env_hosts = [h.strip() for h in os.environ.get("DISTILL_ALLOWED_HOSTS", "").split(",")]
        hosts = tuple(h.lower() for h in (*allowed_hosts, *env_hosts) if h)
        return cls(
            home=Path(home).resolve(),
            host=host,
            port=port,
            token=token,
            allowed_hosts=hosts,
            allowed_roots=roots,
            **limits,
        )

    @property
    def uploads_dir(self) -> Path:
        """Where uploaded sounds land, one folder per upload."""
        return self.home / "uploads"
