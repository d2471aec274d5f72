"""SQLite's line of buyers waiting for a QR: a table ordered by (score, seq), the
lanes' last scores beside it; every change one write transaction, so processes
sharing the file (GATEWAY_WORKERS) share one line."""

from __future__ import annotations

import sqlite3

from gateway.line_model import (
    CLOCK_LANE,
    LineEntry,
    LinePlace,
    Standing,
    fair_score,
    is_settled,
)
from gateway.store.base import Line
from gateway.store.sqlite.connection import Database

_COLUMNS = "user_id, stream_id, address, joined_at_ms, score, seq"
# Asked about more members than this at once, reading the whole line is cheaper.
_SCAN_ABOVE = 16


def _entry(row: sqlite3.Row | tuple[object, ...]) -> LineEntry:
    user_id, stream_id, address, joined_at_ms, score, seq = row
    return LineEntry(str(user_id), str(stream_id), str(address), int(str(joined_at_ms)),
                     int(str(score)), int(str(seq)))


def _position(conn: sqlite3.Connection, entry: LineEntry) -> int:
    row = conn.execute("SELECT COUNT(*) FROM line WHERE score < ? OR (score = ? AND seq < ?)",
                       (entry.score, entry.score, entry.seq)).fetchone()
    return int(row[0]) + 1


def _lane(conn: sqlite3.Connection, address: str) -> int:
    row = conn.execute("SELECT last_score FROM line_lanes WHERE address = ?",
                       (address,)).fetchone()
    return int(row[0]) if row else 0


def _set_lane(conn: sqlite3.Connection, address: str, score: int) -> None:
    conn.execute("INSERT INTO line_lanes (address, last_score) VALUES (?, ?) ON CONFLICT"
                 " (address) DO UPDATE SET last_score = max(last_score, excluded.last_score)",
                 (address, score))


class SQLiteLine(Line):
    def __init__(self, database: Database) -> None:
        self._writer = database.writer
        self._reader = database.reader

    async def join(self, user_id: str, stream_id: str, address: str, now_ms: int,
                   *, front: bool = False) -> LinePlace:
        def write(conn: sqlite3.Connection) -> LinePlace:
            row = conn.execute(f"SELECT {_COLUMNS} FROM line WHERE user_id = ? AND"
                               " stream_id = ?", (user_id, stream_id)).fetchone()
            clock = _lane(conn, CLOCK_LANE)
            if row is not None:
                existing = _entry(row)
                return LinePlace(existing, _position(conn, existing), False,
                                 is_settled(existing.score, clock))
            score = fair_score(clock, _lane(conn, address), front=front)
            cursor = conn.execute(
                "INSERT INTO line (user_id, stream_id, address, score, joined_at_ms)"
                " VALUES (?, ?, ?, ?, ?)", (user_id, stream_id, address, score, now_ms))
            _set_lane(conn, address, score)
            entry = LineEntry(user_id, stream_id, address, now_ms, score,
                              int(cursor.lastrowid or 0))
            return LinePlace(entry, _position(conn, entry), True, is_settled(score, clock))

        return await self._writer.run_in_transaction(write)

    async def standings(self, members: list[tuple[str, str]]
                        ) -> dict[tuple[str, str], Standing]:
        wanted = set(members)

        def read(conn: sqlite3.Connection) -> dict[tuple[str, str], Standing]:
            clock = _lane(conn, CLOCK_LANE)
            if len(wanted) > _SCAN_ABOVE:
                rows = conn.execute("SELECT user_id, stream_id, score FROM line"
                                    " ORDER BY score, seq")
                return {(str(user), str(stream)): Standing(number,
                                                           is_settled(int(score), clock))
                        for number, (user, stream, score) in enumerate(rows, start=1)
                        if (user, stream) in wanted}
            found: dict[tuple[str, str], Standing] = {}
            for user_id, stream_id in wanted:
                row = conn.execute(f"SELECT {_COLUMNS} FROM line WHERE user_id = ? AND"
                                   " stream_id = ?", (user_id, stream_id)).fetchone()
                if row is not None:
                    entry = _entry(row)
                    found[(user_id, stream_id)] = Standing(_position(conn, entry),
                                                           is_settled(entry.score, clock))
            return found

        return await self._reader.run(read)

    async def length(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT COUNT(*) FROM line").fetchone()[0])

        return await self._reader.run(read)

    async def pop(self) -> LineEntry | None:
        def write(conn: sqlite3.Connection) -> LineEntry | None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM line ORDER BY score, seq"
                               " LIMIT 1").fetchone()
            if row is None:
                return None
            entry = _entry(row)
            conn.execute("DELETE FROM line WHERE seq = ?", (entry.seq,))
            _set_lane(conn, CLOCK_LANE, entry.score)
            # Its lane's last entry served: the lane is empty, and forgotten.
            conn.execute("DELETE FROM line_lanes WHERE address = ? AND last_score <= ?",
                         (entry.address, entry.score))
            return entry

        return await self._writer.run_in_transaction(write)

    async def put_back(self, entry: LineEntry) -> None:
        def write(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO line (seq, user_id, stream_id, address, score,"
                " joined_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (entry.seq, entry.user_id, entry.stream_id, entry.address, entry.score,
                 entry.joined_at_ms))
            if cursor.rowcount:
                _set_lane(conn, entry.address, entry.score)

        await self._writer.run_in_transaction(write)

    async def leave(self, user_id: str, stream_id: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM line WHERE user_id = ? AND stream_id = ?",
                         (user_id, stream_id))

        await self._writer.run_in_transaction(write)
