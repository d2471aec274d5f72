"""SQLite: the embedded default store, one module per part over shared connections
(connection.py) and one schema (schema.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from gateway.store.base import Counters, Store
from gateway.store.sqlite.changes import SQLiteChanges
from gateway.store.sqlite.connection import Database
from gateway.store.sqlite.counters import FileCounters, MemoryCounters
from gateway.store.sqlite.grants import SQLiteGrants
from gateway.store.sqlite.ledger import SQLiteLedger
from gateway.store.sqlite.line import SQLiteLine
from gateway.store.sqlite.media_keys import SQLiteMediaKeys
from gateway.store.sqlite.refunds import SQLiteCancellations, SQLiteRefunds
from gateway.store.sqlite.schema import migrate
from gateway.store.sqlite.sessions import SQLiteSessions
from gateway.store.sqlite.sign_ins import SQLiteSignIns


async def open_sqlite(path: str, on_connect: Callable[[sqlite3.Connection], None] | None = None,
                      timeout_s: float = 5.0, *, shared: bool = False) -> Store:
    """The store in the file at `path` (or `:memory:`), its schema brought up to date.
    `on_connect` sees each new connection (e.g. to trace SQL while debugging).
    `shared`: other processes use the file too (GATEWAY_WORKERS): then they count rate
    limits together and hear each other's status changes; one process alone pays for
    neither (a row and a doorbell per change, a counter write per QR)."""
    if shared and path == ":memory:":
        raise ValueError("an in-memory database cannot be shared")
    database = Database(path, on_connect, timeout_s)
    counters: MemoryCounters | FileCounters = MemoryCounters()
    try:
        await database.writer.run(migrate)
        if shared:
            counters = await FileCounters.open(path + "-counters", timeout_s)
    except BaseException:
        await database.close()
        raise
    return Store(sessions=SQLiteSessions(database), ledger=SQLiteLedger(database),
                 grants=SQLiteGrants(database), counters=counters,
                 changes=SQLiteChanges(database, shared), connection=_Files(database, counters),
                 sign_ins=SQLiteSignIns(database), refunds=SQLiteRefunds(database),
                 cancellations=SQLiteCancellations(database),
                 media_keys=SQLiteMediaKeys(database), line=SQLiteLine(database))


class _Files:
    """The store's database and, beside it, its counters' (see counters.py)."""

    def __init__(self, database: Database, counters: Counters) -> None:
        self._database = database
        self._counters = counters

    async def ping(self) -> None:
        await self._database.ping()

    async def close(self) -> None:
        if isinstance(self._counters, FileCounters):
            await self._counters.close()
        await self._database.close()
