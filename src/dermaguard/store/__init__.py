"""Local history in SQLite: the event log, sessions, cycles, rollers and force traces.

:class:`Store` writes (one thread), :func:`open_readonly` reads (the CLI, the outbox), and
:class:`StoreSink` is the effect sink that feeds a store from the engine without blocking it.
"""

from dermaguard.store.db import Store
from dermaguard.store.reader import StoredEvent, StoreError, StoreReader, open_readonly
from dermaguard.store.schema import SCHEMA_VERSION, SchemaError
from dermaguard.store.trace import TraceSample
from dermaguard.store.writer import StoreSink, is_storage_fault

__all__ = [
    "SCHEMA_VERSION",
    "SchemaError",
    "Store",
    "StoreError",
    "StoreReader",
    "StoreSink",
    "StoredEvent",
    "TraceSample",
    "is_storage_fault",
    "open_readonly",
]
