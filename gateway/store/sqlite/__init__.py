"""SQLite: the embedded default store, one module per part over shared connections
(connection.py) and one schema (schema.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from gateway.store.base import Store
from gateway.store.sqlite.changes import NoChanges
from gateway.store.sqlite.connection import Database
from gateway.store.sqlite.counters import MemoryCounters
from gateway.store.sqlite.grants import SQLiteGrants
from gateway.store.sqlite.ledger import SQLiteLedger
from gateway.store.sqlite.media_keys import SQLiteMediaKeys
from gateway.store.sqlite.schema import migrate
from gateway.store.sqlite.sessions import SQLiteSessions


async def open_sqlite(path: str, on_connect: Callable[[sqlite3.Connection], None] | None = None,
                      timeout_s: float = 5.0) -> Store:
    """The store in the file at `path` (or `:memory:`), its schema brought up to date.
    `on_connect` sees each new connection (e.g. to trace SQL while debugging)."""
    database = Database(path, on_connect, timeout_s)
    try:
        await database.writer.run(migrate)
    except BaseException:
        await database.close()
        raise
    return Store(sessions=SQLiteSessions(database), ledger=SQLiteLedger(database),
                 grants=SQLiteGrants(database), counters=MemoryCounters(),
                 changes=NoChanges(), connection=database,
                 media_keys=SQLiteMediaKeys(database))
