"""How a `distill` command finds a running server: a small JSON file in the data directory.

`distill serve` writes it once it listens (host, port, token, pid) and removes it on the
way out; a file left by a server that died is recognised by its pid and ignored.
Kept free of heavy imports: the CLI reads it before deciding anything else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from distill.core.owners import process_alive
from distill.files import write_atomically

SERVER_FILE = "server.json"


@dataclass(frozen=True)
class ServerInfo:
    """Where a live server listens and how to talk to it."""

    host: str
    port: int
    token: str | None
    pid: int

    @property
    def connect_host(self) -> str:
        """A wildcard bind is reached on loopback from this machine."""
        if self.host in ("0.0.0.0", ""):  # settings.WILDCARD_HOSTS
            return "127.0.0.1"
        if self.host == "::":
            return "[::1]"
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def url(self) -> str:
        return f"http://{self.connect_host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.connect_host}:{self.port}"


def server_file(home: Path) -> Path:
    return home / SERVER_FILE


def write_server_file(home: Path, info: ServerInfo) -> Path:
    """Written atomically and readable by this user only: it holds the token."""
    return write_atomically(server_file(home), json.dumps(asdict(info)), mode=0o600)


def remove_server_file(home: Path, pid: int | None = None) -> None:
    """Remove the file if it is ours (a newer server may have replaced it)."""
    info = read_server_file(home, check_alive=False)
    if info is not None and (pid is None or info.pid == pid):
        server_file(home).unlink(missing_ok=True)


def read_server_file(home: Path, check_alive: bool = True) -> ServerInfo | None:
    """The live server's address, or None when there is none (or only a stale file)."""
    try:
        data = json.loads(server_file(home).read_text())
        info = ServerInfo(str(data["host"]), int(data["port"]), data.get("token"), int(data["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if check_alive and not process_alive(info.pid):
        return None
    return info
