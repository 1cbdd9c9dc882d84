"""Which Dask cluster a server runs its jobs on, and how it talks to it: plain data that
imports nothing of Dask, so the CLI and the server settings can hold it and a server
without a cluster never imports dask."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

CLUSTER_ENV = "DISTILL_CLUSTER"  # the scheduler's address, when --cluster is not given
CONNECT_TIMEOUT = 10.0  # s: a scheduler that does not answer by then is reported unreachable


class ClusterError(RuntimeError):
    """The cluster cannot be used: unreachable, misconfigured, or gone."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and "localhost": reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ClusterConfig:
    """A scheduler address (tcp:// or tls://) and, for TLS, the certificates to use.

    Without certificate files here, a tls:// address uses Dask's own security settings
    (the `distributed.comm.tls` section of its config, or DASK_DISTRIBUTED__COMM__TLS__*).
    """

    address: str
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    connect_timeout: float = CONNECT_TIMEOUT  # s

    @classmethod
    def from_options(
        cls, address: str | None, ca_file: str | None = None, cert: str | None = None,
        key: str | None = None,
    ) -> ClusterConfig | None:  # fmt: skip
        """The cluster asked for by --cluster, else DISTILL_CLUSTER; None for neither."""
        address = address or os.environ.get(CLUSTER_ENV) or None
        if address is None:
            if ca_file or cert or key:
                raise ClusterError("certificates were given without a cluster address")
            return None
        if "://" not in address:
            address = f"tcp://{address}"
        try:
            parts = urlsplit(address)
            parts.port  # noqa: B018 - parsed for its check: 0 to 65535, digits only
        except ValueError as error:
            raise ClusterError(f"{address}: not a scheduler address ({error})") from None
        scheme = parts.scheme
        if scheme not in ("tcp", "tls"):
            raise ClusterError(f"{address}: use a tcp:// or tls:// scheduler address")
        if not parts.hostname:
            raise ClusterError(f"{address}: the scheduler address names no host")
        if (ca_file or cert or key) and scheme != "tls":
            raise ClusterError(f"{address}: certificates need a tls:// address")
        for path in (ca_file, cert, key):
            if path and not os.path.isfile(path):
                raise ClusterError(f"no certificate file at {path}")
        return cls(address, ca_file, cert, key)

    @property
    def host(self) -> str:
        return urlsplit(self.address).hostname or ""

    @property
    def uses_tls(self) -> bool:
        return self.address.startswith("tls://")

    def warning(self) -> str | None:
        """What to tell the user at start, for a plain address off this machine."""
        if self.uses_tls or is_loopback(self.host):
            return None
        return (
            f"the scheduler at {self.address} is reached without TLS: anyone who can reach "
            "it can run code on its workers. Use a tls:// address with certificates."
        )
