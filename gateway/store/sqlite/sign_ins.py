"""SQLite's ended console sign-ins: one row each, dropped once past its time."""

from __future__ import annotations

import sqlite3

from gateway.store.base import SignIns
from gateway.store.sqlite.connection import Database


class SQLiteSignIns(SignIns):
    def __init__(self, database: Database) -> None:
        self._reader = database.reader
        self._writer = database.writer

    async def end(self, sign_in_id: str, until_ms: int, now_ms: int) -> None:
        def write(conn: sqlite3.Connection) -> None:
            # Sign-outs are rare: tidying up at each one keeps the table small.
            conn.execute("DELETE FROM ended_sign_ins WHERE until_ms <= ?", (now_ms,))
            conn.execute("INSERT OR REPLACE INTO ended_sign_ins (sign_in_id, until_ms)"
                         " VALUES (?, ?)", (sign_in_id, until_ms))

        await self._writer.run_in_transaction(write)

    async def is_ended(self, sign_in_id: str, now_ms: int) -> bool:
        def read(conn: sqlite3.Connection) -> bool:
            return conn.execute("SELECT 1 FROM ended_sign_ins WHERE sign_in_id = ?"
                                " AND until_ms > ?", (sign_in_id, now_ms)).fetchone() is not None

        return await self._reader.run(read)
