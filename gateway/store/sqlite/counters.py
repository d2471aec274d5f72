"""Rate-limit counters of an embedded store. In memory when the database is (one
process's); otherwise in a small database file of their own beside it, so that every
process sharing the store (GATEWAY_WORKERS) counts together. Counts are not worth an
fsync: that file is written without one, and a power cut forgets a window's count.
"""

from __future__ import annotations

import sqlite3

from gateway.store.base import Counters
from gateway.store.sqlite.connection import Database

# Beyond this many buckets, old windows are dropped wholesale rather than one by one.
_MAX_BUCKETS = 100_000


class MemoryCounters(Counters):
    def __init__(self) -> None:
        self._hits: dict[str, tuple[int, int]] = {}  # bucket -> (window, count)
        self._next: dict[str, int] = {}  # paced bucket -> its next free moment, in ms

    async def count_hit(self, bucket: str, window_s: int, now_ms: int) -> int:
        window = now_ms // (window_s * 1000)
        if len(self._hits) > _MAX_BUCKETS:
            self._hits = {key: hit for key, hit in self._hits.items() if hit[0] == window}
        seen_window, count = self._hits.get(bucket, (window, 0))
        count = count + 1 if seen_window == window else 1
        self._hits[bucket] = (window, count)
        return count

    async def reserve(self, bucket: str, interval_ms: int, now_ms: int,
                      max_wait_ms: int, catch_up_ms: int = 0) -> int | None:
        free_ms = max(self._next.get(bucket, 0), now_ms - catch_up_ms)
        if free_ms - now_ms > max_wait_ms:
            return None
        self._next[bucket] = free_ms + interval_ms
        return max(0, free_ms - now_ms)

    async def hold(self, bucket: str, until_ms: int, now_ms: int) -> None:
        self._next[bucket] = max(self._next.get(bucket, 0), until_ms)

    async def next_free_ms(self, bucket: str, now_ms: int) -> int:
        return max(0, self._next.get(bucket, 0) - now_ms)


class FileCounters(Counters):
    def __init__(self, database: Database) -> None:
        self._database = database
        self._counted = 0

    @classmethod
    async def open(cls, path: str, timeout_s: float) -> FileCounters:
        database = Database(path, timeout_s=timeout_s, durable=False, reader=False)
        await database.writer.run(_create)
        return cls(database)

    async def count_hit(self, bucket: str, window_s: int, now_ms: int) -> int:
        window_ms = window_s * 1000
        window_start_ms = now_ms - now_ms % window_ms
        self._counted += 1
        tidy = self._counted % 1000 == 0

        def count(conn: sqlite3.Connection) -> int:
            if tidy:  # windows long over go, now and then
                conn.execute("DELETE FROM counts WHERE window_end_ms < ?", (now_ms,))
            row = conn.execute(
                "INSERT INTO counts (bucket, window_start_ms, window_end_ms, hits)"
                " VALUES (?, ?, ?, 1) ON CONFLICT (bucket, window_start_ms)"
                " DO UPDATE SET hits = hits + 1 RETURNING hits",
                (bucket, window_start_ms, window_start_ms + window_ms)).fetchone()
            return int(row[0])

        return await self._database.writer.run_in_transaction(count)

    async def reserve(self, bucket: str, interval_ms: int, now_ms: int,
                      max_wait_ms: int, catch_up_ms: int = 0) -> int | None:
        def take(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT next_ms FROM paces WHERE bucket = ?",
                               (bucket,)).fetchone()
            free_ms = max(int(row[0]) if row else 0, now_ms - catch_up_ms)
            if free_ms - now_ms > max_wait_ms:
                return None
            conn.execute("INSERT INTO paces (bucket, next_ms) VALUES (?, ?) ON CONFLICT"
                         " (bucket) DO UPDATE SET next_ms = excluded.next_ms",
                         (bucket, free_ms + interval_ms))
            return max(0, free_ms - now_ms)

        return await self._database.writer.run_in_transaction(take)

    async def hold(self, bucket: str, until_ms: int, now_ms: int) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO paces (bucket, next_ms) VALUES (?, ?) ON CONFLICT"
                         " (bucket) DO UPDATE SET next_ms = max(next_ms, excluded.next_ms)",
                         (bucket, until_ms))

        await self._database.writer.run_in_transaction(write)

    async def next_free_ms(self, bucket: str, now_ms: int) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT next_ms FROM paces WHERE bucket = ?",
                               (bucket,)).fetchone()
            return max(0, (int(row[0]) if row else 0) - now_ms)

        return await self._database.writer.run(read)

    async def close(self) -> None:
        await self._database.close()


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS counts (bucket TEXT NOT NULL,"
                 " window_start_ms INTEGER NOT NULL, window_end_ms INTEGER NOT NULL,"
                 " hits INTEGER NOT NULL, PRIMARY KEY (bucket, window_start_ms))"
                 " WITHOUT ROWID")
    # Paced buckets (provider create calls): the next moment one is free.
    conn.execute("CREATE TABLE IF NOT EXISTS paces (bucket TEXT PRIMARY KEY,"
                 " next_ms INTEGER NOT NULL) WITHOUT ROWID")
