"""SQLite's payment sessions: `payment_sessions`, where a partial unique index makes
"one active session per viewer and stream" (rule 1) a constraint the file itself
enforces. Every write is one `BEGIN IMMEDIATE` transaction that reads the rows, hands
them to the model and writes back what it returns; a payment's ledger entry and sales
counters are written in the same one (ledger.py's `record_entry`, `count_sale`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from gateway.model import (
    ENDED_BY_REVOCATION,
    Notification,
    NotificationReason,
    PaymentContext,
    PaymentDecision,
    PaymentSession,
    SessionStatus,
    decide_new_session,
    decide_revocation,
    expire_stale,
)
from gateway.store.base import PaymentSessions
from gateway.store.sqlite.connection import Database
from gateway.store.sqlite.ledger import count_sale, event_recorded, record_entry, replayed
from gateway.store.sqlite.schema import ACTIVE

_SESSION_COLUMNS = (
    "session_id, user_id, stream_id, provider, trx_id, amount, fee, qr_string, status,"
    " created_at_ms, paid_at_ms, expires_at_ms, starts_at_ms, renews, paid_until_ms,"
    " ended_reason"
)


class SQLiteSessions(PaymentSessions):
    def __init__(self, database: Database) -> None:
        self._reader = database.reader
        self._writer = database.writer

    async def _one(self, sql: str, params: Sequence[Any]) -> PaymentSession | None:
        def query(conn: sqlite3.Connection) -> PaymentSession | None:
            row = conn.execute(sql, params).fetchone()
            return _session(row) if row else None

        return await self._reader.run(query)

    async def get(self, session_id: str) -> PaymentSession | None:
        return await self._one(
            f"SELECT {_SESSION_COLUMNS} FROM payment_sessions WHERE session_id = ?",
            (session_id,),
        )

    async def get_many(self, session_ids: list[str]) -> list[PaymentSession]:
        def query(conn: sqlite3.Connection) -> list[PaymentSession]:
            found: list[PaymentSession] = []
            for start in range(0, len(session_ids), 500):  # under SQLite's variable limit
                chunk = session_ids[start:start + 500]
                found += map(_session, conn.execute(
                    f"SELECT {_SESSION_COLUMNS} FROM payment_sessions"
                    f" WHERE session_id IN ({', '.join('?' * len(chunk))})", chunk))
            return found

        return await self._reader.run(query)

    async def get_by_trx(self, provider: str, trx_id: str) -> PaymentSession | None:
        return await self._one(
            f"SELECT {_SESSION_COLUMNS} FROM payment_sessions WHERE provider = ? AND trx_id = ?",
            (provider, trx_id),
        )

    async def active_for_stream(
        self, user_id: str, stream_id: str, now_ms: int
    ) -> list[PaymentSession]:
        def query(conn: sqlite3.Connection) -> list[PaymentSession]:
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM payment_sessions"
                f" WHERE user_id = ? AND stream_id = ? AND {ACTIVE}"
                " ORDER BY created_at_ms, session_id",
                (user_id, stream_id),
            ).fetchall()
            return [session for session in map(_session, rows) if session.is_active(now_ms)]

        return await self._reader.run(query)

    async def list_paid(self, user_id: str, limit: int) -> list[PaymentSession]:
        def query(conn: sqlite3.Connection) -> list[PaymentSession]:
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM payment_sessions"
                " WHERE user_id = ? AND paid_at_ms IS NOT NULL"
                " ORDER BY paid_at_ms DESC, session_id LIMIT ?",
                (user_id, limit),
            ).fetchall()
            return [_session(row) for row in rows]

        return await self._reader.run(query)

    async def list_active(self, user_id: str, now_ms: int) -> list[PaymentSession]:
        def query(conn: sqlite3.Connection) -> list[PaymentSession]:
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM payment_sessions"
                f" WHERE user_id = ? AND {ACTIVE} ORDER BY created_at_ms, session_id",
                (user_id,),
            ).fetchall()
            return [session for session in map(_session, rows) if session.is_active(now_ms)]

        return await self._reader.run(query)

    async def insert_pending(
        self, candidate: PaymentSession, now_ms: int
    ) -> tuple[PaymentSession, bool]:
        def insert(conn: sqlite3.Connection) -> tuple[PaymentSession, bool]:
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM payment_sessions"
                f" WHERE user_id = ? AND stream_id = ? AND {ACTIVE}",
                (candidate.user_id, candidate.stream_id),
            ).fetchall()
            decision = decide_new_session(candidate, map(_session, rows), now_ms)
            _write_state(conn, decision.expired)
            if not decision.inserted:
                return decision.session, False
            stored = decision.session  # the candidate, as a renewal or not
            conn.execute(
                f"INSERT INTO payment_sessions ({_SESSION_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (stored.session_id, stored.user_id, stored.stream_id,
                 stored.provider, stored.trx_id, stored.amount, stored.fee,
                 stored.qr_string, stored.status.value, stored.created_at_ms,
                 stored.paid_at_ms, stored.expires_at_ms, stored.starts_at_ms,
                 stored.renews, stored.paid_until_ms, stored.ended_reason),
            )
            count_sale(conn, stored.stream_id, stored.created_at_ms, qrs=1)
            return stored, True

        return await self._writer.run_in_transaction(insert)

    async def apply_notification(
        self,
        notification: Notification,
        decide: Callable[[PaymentContext], PaymentDecision],
    ) -> PaymentDecision:
        note = notification

        def apply(conn: sqlite3.Connection) -> PaymentDecision:
            if note.replay_key is not None and replayed(conn, note.replay_key):
                return PaymentDecision(False, NotificationReason.REPLAYED, None)
            by_trx = (
                f"SELECT {_SESSION_COLUMNS} FROM payment_sessions"
                " WHERE provider = ? AND trx_id = ?"
            )
            row = conn.execute(by_trx, (note.provider, note.trx_id)).fetchone()
            session = _session(row) if row else None
            others: tuple[PaymentSession, ...] = ()
            if session is not None:
                others = tuple(
                    _session(other)
                    for other in conn.execute(
                        f"SELECT {_SESSION_COLUMNS} FROM payment_sessions"
                        f" WHERE user_id = ? AND stream_id = ? AND {ACTIVE}"
                        " AND session_id != ?",
                        (session.user_id, session.stream_id, session.session_id),
                    )
                )
            decision = decide(PaymentContext(note, session, event_recorded(conn, note), others))
            _write_state(conn, decision.writes)
            for changed in decision.changed:
                if changed.status == SessionStatus.PAID and changed.paid_at_ms is not None:
                    count_sale(conn, changed.stream_id, changed.paid_at_ms, tickets=1,
                               takings=changed.amount)
            record_entry(conn, note, decision,
                         session.stream_id if session is not None else None)
            return decision

        return await self._writer.run_in_transaction(apply)

    async def expire_due(self, now_ms: int, limit: int) -> list[PaymentSession]:
        def expire(conn: sqlite3.Connection) -> list[PaymentSession]:
            # The index finds the candidates; the model says which are over.
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM payment_sessions"
                f" WHERE {ACTIVE} AND expires_at_ms <= ? ORDER BY expires_at_ms LIMIT ?",
                (now_ms, limit),
            ).fetchall()
            _, expired = expire_stale(map(_session, rows), now_ms)
            _write_state(conn, expired)
            return list(expired)

        return await self._writer.run_in_transaction(expire)

    async def prune_unpaid(self, expired_before_ms: int, limit: int) -> int:
        def prune(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM payment_sessions WHERE session_id IN ("
                " SELECT session_id FROM payment_sessions"
                " WHERE status = 'expired' AND paid_at_ms IS NULL AND expires_at_ms < ?"
                " LIMIT ?)",
                (expired_before_ms, limit),
            ).rowcount

        return await self._writer.run_in_transaction(prune)

    async def end_paid_session(self, session_id: str, now_ms: int,
                               reason: str = ENDED_BY_REVOCATION) -> PaymentSession | None:
        def end(conn: sqlite3.Connection) -> PaymentSession | None:
            row = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM payment_sessions WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            ended = decide_revocation(_session(row), now_ms, reason) if row else None
            if ended is not None:
                _write_state(conn, [ended])
            return ended

        return await self._writer.run_in_transaction(end)

    async def ended_early(self, now_ms: int) -> list[PaymentSession]:
        def query(conn: sqlite3.Connection) -> list[PaymentSession]:
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM payment_sessions"
                " WHERE status = 'expired' AND paid_at_ms IS NOT NULL AND paid_until_ms > ?",
                (now_ms,),
            ).fetchall()
            return [_session(row) for row in rows]

        return await self._reader.run(query)

    async def unpaid_created_between(self, created_after_ms: int, created_before_ms: int,
                                     limit: int) -> list[PaymentSession]:
        def query(conn: sqlite3.Connection) -> list[PaymentSession]:
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM payment_sessions"
                " WHERE paid_at_ms IS NULL AND created_at_ms > ? AND created_at_ms <= ?"
                " ORDER BY created_at_ms LIMIT ?",
                (created_after_ms, created_before_ms, limit),
            ).fetchall()
            return [_session(row) for row in rows]

        return await self._reader.run(query)

    async def payments(self, status: SessionStatus | None, stream_id: str | None,
                       limit: int) -> list[PaymentSession]:
        def query(conn: sqlite3.Connection) -> list[PaymentSession]:
            where, params = ["1"], []
            if status is not None:
                where.append("status = ?")
                params.append(status.value)
            if stream_id is not None:
                where.append("stream_id = ?")
                params.append(stream_id)
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM payment_sessions WHERE {' AND '.join(where)}"
                " ORDER BY created_at_ms DESC, session_id LIMIT ?",
                (*params, limit),
            ).fetchall()
            return [_session(row) for row in rows]

        return await self._reader.run(query)

    async def sessions_of_user(self, user_id: str, limit: int) -> list[PaymentSession]:
        def select(conn: sqlite3.Connection) -> list[PaymentSession]:
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM payment_sessions WHERE user_id = ?"
                " ORDER BY created_at_ms DESC, session_id DESC LIMIT ?",
                (user_id, limit)).fetchall()
            return [_session(row) for row in rows]

        return await self._reader.run(select)

    async def paid_now(self, now_ms: int) -> dict[str, list[str]]:
        def select(conn: sqlite3.Connection) -> dict[str, list[str]]:
            paid: dict[str, list[str]] = {}
            for row in conn.execute(
                    "SELECT stream_id, session_id FROM payment_sessions"
                    " WHERE status = 'paid' AND expires_at_ms > ?", (now_ms,)):
                paid.setdefault(row["stream_id"], []).append(row["session_id"])
            return paid

        return await self._reader.run(select)


def _session(row: sqlite3.Row) -> PaymentSession:
    return PaymentSession(
        session_id=row["session_id"], user_id=row["user_id"], stream_id=row["stream_id"],
        provider=row["provider"], trx_id=row["trx_id"], amount=row["amount"],
        fee=row["fee"], qr_string=row["qr_string"], status=SessionStatus(row["status"]),
        created_at_ms=row["created_at_ms"], paid_at_ms=row["paid_at_ms"],
        expires_at_ms=row["expires_at_ms"], starts_at_ms=row["starts_at_ms"],
        renews=row["renews"], paid_until_ms=row["paid_until_ms"],
        ended_reason=row["ended_reason"],
    )


def _write_state(conn: sqlite3.Connection, sessions: Sequence[PaymentSession]) -> None:
    """Store the new states the model decided (the only columns that ever change)."""
    conn.executemany(
        "UPDATE payment_sessions SET status = ?, paid_at_ms = ?, expires_at_ms = ?,"
        " starts_at_ms = ?, renews = ?, paid_until_ms = ?, ended_reason = ?"
        " WHERE session_id = ?",
        [(session.status.value, session.paid_at_ms, session.expires_at_ms,
          session.starts_at_ms, session.renews, session.paid_until_ms,
          session.ended_reason, session.session_id)
         for session in sessions],
    )
