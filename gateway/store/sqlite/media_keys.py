"""SQLite's media keys: one row per stream and key id in `media_keys`. A key is made with
`INSERT OR IGNORE` and read back in the same `BEGIN IMMEDIATE` transaction, so two
processes on one file that race to make it both get the one that was stored first.
Rows are never pruned: one key per stream and rotation is ~720 rows a day at the
default rotation, a few dozen bytes each."""

from __future__ import annotations

import sqlite3

from gateway.store.base import MediaKeys
from gateway.store.sqlite.connection import Database

_SELECT = "SELECT key FROM media_keys WHERE stream_id = ? AND key_id = ?"


class SQLiteMediaKeys(MediaKeys):
    def __init__(self, database: Database) -> None:
        self._reader = database.reader
        self._writer = database.writer

    async def get(self, stream_id: str, key_id: str) -> bytes | None:
        def select(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(_SELECT, (stream_id, key_id)).fetchone()
            return bytes(row["key"]) if row else None

        return await self._reader.run(select)

    async def create(self, stream_id: str, key_id: str, key: bytes) -> bytes:
        def insert(conn: sqlite3.Connection) -> bytes:
            conn.execute("INSERT OR IGNORE INTO media_keys (stream_id, key_id, key)"
                         " VALUES (?, ?, ?)", (stream_id, key_id, key))
            return bytes(conn.execute(_SELECT, (stream_id, key_id)).fetchone()["key"])

        return await self._writer.run_in_transaction(insert)
