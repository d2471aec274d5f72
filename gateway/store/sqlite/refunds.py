"""SQLite's refunds (`refunds`, one row each) and cancelled shows (`cancelled_streams`).
A payment's refunds are read and the new one written in one `BEGIN IMMEDIATE`
transaction: the write lock makes every other creation for any payment wait its turn.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from gateway.refund_model import Cancellation, Refund, RefundStatus
from gateway.store.base import Cancellations, Refunds
from gateway.store.sqlite.connection import Database

_COLUMNS = ("refund_id, trx_id, provider, number, amount, reason, status, requested_at_ms,"
            " updated_at_ms, requested_by, session_id, stream_id, provider_refund_id,"
            " failure_code, note, attempts, by_hand")
_PLACES = ", ".join("?" * 17)


class SQLiteRefunds(Refunds):
    def __init__(self, database: Database) -> None:
        self._reader = database.reader
        self._writer = database.writer

    async def create(self, trx_id: str, decide: Callable[[list[Refund]], Refund]) -> Refund:
        def create(conn: sqlite3.Connection) -> Refund:
            refund = decide(_of_payment(conn, trx_id))
            conn.execute(f"INSERT INTO refunds ({_COLUMNS}) VALUES ({_PLACES})", _row(refund))
            return refund

        return await self._writer.run_in_transaction(create)

    async def save(self, refund: Refund) -> None:
        def save(conn: sqlite3.Connection) -> None:
            conn.execute(f"INSERT OR REPLACE INTO refunds ({_COLUMNS}) VALUES ({_PLACES})",
                         _row(refund))

        await self._writer.run_in_transaction(save)

    async def get(self, refund_id: str) -> Refund | None:
        def read(conn: sqlite3.Connection) -> Refund | None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM refunds WHERE refund_id = ?",
                               (refund_id,)).fetchone()
            return _refund(row) if row else None

        return await self._reader.run(read)

    async def of_payment(self, trx_id: str) -> list[Refund]:
        return await self._reader.run(lambda conn: _of_payment(conn, trx_id))

    async def by_provider_id(self, provider_refund_id: str) -> Refund | None:
        def read(conn: sqlite3.Connection) -> Refund | None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM refunds WHERE provider_refund_id = ?",
                               (provider_refund_id,)).fetchone()
            return _refund(row) if row else None

        return await self._reader.run(read)

    async def listing(self, status: RefundStatus | None, trx_id: str | None,
                      limit: int) -> list[Refund]:
        where, params = ["1"], []
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if trx_id is not None:
            where.append("trx_id = ?")
            params.append(trx_id)

        def read(conn: sqlite3.Connection) -> list[Refund]:
            return [_refund(row) for row in conn.execute(
                f"SELECT {_COLUMNS} FROM refunds WHERE {' AND '.join(where)}"
                " ORDER BY requested_at_ms DESC, refund_id DESC LIMIT ?", (*params, limit))]

        return await self._reader.run(read)

    async def unanswered(self, limit: int) -> list[Refund]:
        def read(conn: sqlite3.Connection) -> list[Refund]:
            return [_refund(row) for row in conn.execute(
                f"SELECT {_COLUMNS} FROM refunds WHERE status = 'requested'"
                " AND provider_refund_id IS NULL ORDER BY updated_at_ms LIMIT ?", (limit,))]

        return await self._reader.run(read)


class SQLiteCancellations(Cancellations):
    def __init__(self, database: Database) -> None:
        self._reader = database.reader
        self._writer = database.writer

    async def cancel(self, cancellation: Cancellation) -> Cancellation:
        def cancel(conn: sqlite3.Connection) -> Cancellation:
            conn.execute("INSERT OR IGNORE INTO cancelled_streams"
                         " (stream_id, reason, cancelled_at_ms, cancelled_by) VALUES (?, ?, ?, ?)",
                         (cancellation.stream_id, cancellation.reason,
                          cancellation.cancelled_at_ms, cancellation.cancelled_by))
            return _all(conn)[cancellation.stream_id]

        return await self._writer.run_in_transaction(cancel)

    async def all(self) -> dict[str, Cancellation]:
        return await self._reader.run(_all)


def _all(conn: sqlite3.Connection) -> dict[str, Cancellation]:
    return {row["stream_id"]: Cancellation(row["stream_id"], row["reason"],
                                           row["cancelled_at_ms"], row["cancelled_by"])
            for row in conn.execute("SELECT stream_id, reason, cancelled_at_ms, cancelled_by"
                                    " FROM cancelled_streams")}


def _of_payment(conn: sqlite3.Connection, trx_id: str) -> list[Refund]:
    return [_refund(row) for row in conn.execute(
        f"SELECT {_COLUMNS} FROM refunds WHERE trx_id = ? ORDER BY number", (trx_id,))]


def _row(refund: Refund) -> tuple[object, ...]:
    return (refund.refund_id, refund.trx_id, refund.provider, refund.number, refund.amount,
            refund.reason, refund.status.value, refund.requested_at_ms, refund.updated_at_ms,
            refund.requested_by, refund.session_id, refund.stream_id,
            refund.provider_refund_id, refund.failure_code, refund.note, refund.attempts,
            int(refund.by_hand))


def _refund(row: sqlite3.Row) -> Refund:
    return Refund(
        refund_id=row["refund_id"], trx_id=row["trx_id"], provider=row["provider"],
        number=row["number"], amount=row["amount"], reason=row["reason"],
        status=RefundStatus(row["status"]), requested_at_ms=row["requested_at_ms"],
        updated_at_ms=row["updated_at_ms"], requested_by=row["requested_by"],
        session_id=row["session_id"], stream_id=row["stream_id"],
        provider_refund_id=row["provider_refund_id"], failure_code=row["failure_code"],
        note=row["note"], attempts=row["attempts"], by_hand=bool(row["by_hand"]))
