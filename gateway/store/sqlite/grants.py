"""SQLite's device grants: `playback_grants`, where a partial unique index keeps one
live grant per purchase and device, and `device_places`, one row per grant and client
address it was seen playing from. A claim reads the grant and the purchase's places in
one `BEGIN IMMEDIATE` transaction and writes what `device_model.decide_claim` says.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Collection

from gateway.device_model import DeviceGrant, DevicePlace, PlaceClaim, decide_claim
from gateway.store.base import DeviceGrants
from gateway.store.sqlite.connection import Database

_GRANT_COLUMNS = "grant_id, session_id, device, created_at_ms, ended_at_ms"
_PLACE_COLUMNS = "grant_id, address, first_seen_ms, last_seen_ms"


class SQLiteGrants(DeviceGrants):
    def __init__(self, database: Database) -> None:
        self._reader = database.reader
        self._writer = database.writer

    async def grant_for_device(self, session_id: str, device: str, now_ms: int,
                               new_grant_id: str, playing_since_ms: int
                               ) -> tuple[DeviceGrant, list[DevicePlace]]:
        current = (f"SELECT {_GRANT_COLUMNS} FROM playback_grants"
                   " WHERE session_id = ? AND device = ? AND ended_at_ms IS NULL")

        def find(conn: sqlite3.Connection) -> tuple[DeviceGrant | None, list[DevicePlace]]:
            row = conn.execute(current, (session_id, device)).fetchone()
            return _grant(row) if row else None, _playing(conn, session_id, playing_since_ms)

        # The device asks again on every page load: a read, and a write only the first time.
        found, places = await self._reader.run(find)
        if found is not None:
            return found, places

        def insert(conn: sqlite3.Connection) -> DeviceGrant:
            row = conn.execute(current, (session_id, device)).fetchone()
            if row is not None:
                return _grant(row)
            grant = DeviceGrant(new_grant_id, session_id, device, now_ms)
            conn.execute(f"INSERT INTO playback_grants ({_GRANT_COLUMNS})"
                         " VALUES (?, ?, ?, ?, NULL)",
                         (grant.grant_id, session_id, device, now_ms))
            return grant

        return await self._writer.run_in_transaction(insert), places

    async def get_grant(self, grant_id: str) -> DeviceGrant | None:
        return await self._reader.run(lambda conn: _grant_by_id(conn, grant_id))

    async def grants(self, session_id: str) -> list[DeviceGrant]:
        def query(conn: sqlite3.Connection) -> list[DeviceGrant]:
            return [_grant(row) for row in conn.execute(
                f"SELECT {_GRANT_COLUMNS} FROM playback_grants WHERE session_id = ?"
                " ORDER BY created_at_ms, grant_id", (session_id,))]

        return await self._reader.run(query)

    async def end_grant(self, grant_id: str, now_ms: int) -> DeviceGrant | None:
        def end(conn: sqlite3.Connection) -> DeviceGrant | None:
            conn.execute("UPDATE playback_grants SET ended_at_ms = ?"
                         " WHERE grant_id = ? AND ended_at_ms IS NULL", (now_ms, grant_id))
            ended = _grant_by_id(conn, grant_id)
            if ended is not None:  # its purchase names the places' index
                conn.execute("DELETE FROM device_places WHERE session_id = ? AND grant_id = ?",
                             (ended.session_id, grant_id))
            return ended

        return await self._writer.run_in_transaction(end)

    async def claim_place(self, session_id: str, grant_id: str, address: str, now_ms: int,
                          since_ms: int, limit: int) -> PlaceClaim:
        def claim(conn: sqlite3.Connection) -> PlaceClaim:
            decision = decide_claim(session_id, _grant_by_id(conn, grant_id),
                                    _places(conn, session_id), address, now_ms, since_ms, limit)
            conn.executemany(
                "DELETE FROM device_places WHERE session_id = ? AND grant_id = ? AND address = ?",
                [(session_id, place.grant_id, place.address) for place in decision.forget])
            if decision.write is not None:
                place = decision.write
                conn.execute(f"INSERT OR REPLACE INTO device_places (session_id, {_PLACE_COLUMNS})"
                             " VALUES (?, ?, ?, ?, ?)",
                             (session_id, place.grant_id, place.address, place.first_seen_ms,
                              place.last_seen_ms))
            # The same window for every other purchase: nothing else would clear the
            # places of one that nobody plays any more (Redis lets those expire).
            conn.execute("DELETE FROM device_places WHERE last_seen_ms <= ?", (since_ms,))
            return decision.claim

        return await self._writer.run_in_transaction(claim)

    async def playing(self, session_id: str, since_ms: int) -> list[DevicePlace]:
        return await self._reader.run(lambda conn: _playing(conn, session_id, since_ms))

    async def playing_counts(self, session_ids: Collection[str], since_ms: int
                             ) -> dict[str, int]:
        wanted = set(session_ids)

        def select(conn: sqlite3.Connection) -> dict[str, int]:
            # From the places seen lately (the ones playing, few next to the purchases,
            # read by their index), not from the purchases: there may be many.
            return dict(Counter(row["session_id"] for row in conn.execute(
                "SELECT session_id FROM device_places WHERE last_seen_ms > ?", (since_ms,))
                if row["session_id"] in wanted))

        return await self._reader.run(select)



def _grant(row: sqlite3.Row) -> DeviceGrant:
    return DeviceGrant(grant_id=row["grant_id"], session_id=row["session_id"],
                       device=row["device"], created_at_ms=row["created_at_ms"],
                       ended_at_ms=row["ended_at_ms"])


def _grant_by_id(conn: sqlite3.Connection, grant_id: str) -> DeviceGrant | None:
    row = conn.execute(f"SELECT {_GRANT_COLUMNS} FROM playback_grants WHERE grant_id = ?",
                       (grant_id,)).fetchone()
    return _grant(row) if row else None


def _place(row: sqlite3.Row) -> DevicePlace:
    return DevicePlace(grant_id=row["grant_id"], address=row["address"],
                       first_seen_ms=row["first_seen_ms"], last_seen_ms=row["last_seen_ms"])


def _places(conn: sqlite3.Connection, session_id: str) -> list[DevicePlace]:
    return [_place(row) for row in conn.execute(
        f"SELECT {_PLACE_COLUMNS} FROM device_places WHERE session_id = ?", (session_id,))]


def _playing(conn: sqlite3.Connection, session_id: str, since_ms: int) -> list[DevicePlace]:
    return [_place(row) for row in conn.execute(
        f"SELECT {_PLACE_COLUMNS} FROM device_places"
        " WHERE session_id = ? AND last_seen_ms > ?"
        " ORDER BY first_seen_ms, grant_id, address", (session_id, since_ms))]
