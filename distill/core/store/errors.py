"""What the store refuses, as exceptions its callers can tell apart."""

from __future__ import annotations

from distill.events import RUN_STATUSES


class StoreError(Exception):
    """Something distill's SQLite file cannot do."""


class SchemaTooNew(StoreError):
    """The database was written by a newer distill than this one."""


class UnknownRun(StoreError, LookupError):
    """No run has that id."""


class StoreClosed(StoreError):
    """The store was used after `close()`."""


class UnknownStatus(StoreError, ValueError):
    """A status that is none of RUN_STATUSES."""


def check_status(status: str) -> str:
    """`status` if it is a run status; else UnknownStatus, naming the ones there are."""
    if status not in RUN_STATUSES:
        raise UnknownStatus(f"unknown status {status!r}: one of {', '.join(RUN_STATUSES)}")
    return status
