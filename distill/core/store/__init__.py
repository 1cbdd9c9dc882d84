"""distill's one SQLite file: the event record and the tables the pages read.

store.py is the Store (its writes and queries); projections.py says what each event kind
changes in the tables; migrations.py builds and upgrades the schema; connection.py opens
the file. Adding an event kind that a page reads from a table touches projections.py
(and migrations.py for a new table).
"""

from distill.core.store.connection import BUSY_TIMEOUT_MS
from distill.core.store.errors import (
    SchemaTooNew,
    StoreClosed,
    StoreError,
    UnknownRun,
    UnknownStatus,
    check_status,
)
from distill.core.store.migrations import MIGRATIONS, SCHEMA_VERSION
from distill.core.store.projections import (
    EPOCH_COLUMNS,
    HEALTH_COLUMNS,
    MEMORIZATION_COLUMNS,
    PRIOR_EPOCH_COLUMNS,
)
from distill.core.store.store import OWNER_FIELD, Store

__all__ = [
    "BUSY_TIMEOUT_MS",
    "EPOCH_COLUMNS",
    "HEALTH_COLUMNS",
    "MEMORIZATION_COLUMNS",
    "MIGRATIONS",
    "OWNER_FIELD",
    "PRIOR_EPOCH_COLUMNS",
    "SCHEMA_VERSION",
    "SchemaTooNew",
    "Store",
    "StoreClosed",
    "StoreError",
    "UnknownRun",
    "UnknownStatus",
    "check_status",
]
