"""SQLite's ledger: `provider_notifications`, one row per authentic notification; the
lists `ledger.ledger_tags` names, as rows of `ledger_tags` (tag, time, entry); and the
hourly `sales_hourly` counters.

Entries and counters are written by the payment's own transaction (sessions.py calls
`record_entry` and `count_sale`, after asking `replayed` and `event_recorded`);
settling is this part's one write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from gateway.ledger import (
    LedgerEntry,
    LedgerQuery,
    SalesBucket,
    Settlement,
    decide_settlement,
    hour_start,
    ledger_tags,
)
from gateway.model import Notification, PaymentDecision
from gateway.store.base import Ledger
from gateway.store.sqlite.connection import Database

# Named with their table: a listing joins them to its tags.
_LEDGER_COLUMNS = ", ".join(f"provider_notifications.{column}" for column in (
    "provider", "event_id", "trx_id", "amount", "reported_status", "paid_at_ms",
    "received_at_ms", "raw_body", "replay_key", "applied", "reason", "session_id", "id",
    "stream_id", "settled_at_ms", "settled_by", "settled_note", "fee"))


class SQLiteLedger(Ledger):
    def __init__(self, database: Database) -> None:
        self._reader = database.reader
        self._writer = database.writer

    async def notifications(self, trx_id: str | None = None,
                            limit: int = 100) -> list[LedgerEntry]:
        where, params = ("WHERE trx_id = ?", [trx_id]) if trx_id is not None else ("", [])

        def select(conn: sqlite3.Connection) -> list[LedgerEntry]:
            return [_entry(row) for row in conn.execute(
                f"SELECT {_LEDGER_COLUMNS} FROM provider_notifications {where}"
                " ORDER BY id DESC LIMIT ?", (*params, limit))]

        return await self._reader.run(select)

    async def ledger(self, query: LedgerQuery, limit: int) -> list[LedgerEntry]:
        scan = query.scan()
        bounds = ""
        if scan.since is not None:
            bounds += " AND (ledger_tags.received_at_ms, entry_id) >= (?, ?)"
        if scan.before is not None:
            bounds += " AND (ledger_tags.received_at_ms, entry_id) < (?, ?)"
        select = (
            f"SELECT {_LEDGER_COLUMNS} FROM ledger_tags"
            " JOIN provider_notifications ON provider_notifications.id = entry_id"
            " WHERE tag_id = (SELECT tag_id FROM ledger_tag_names WHERE tag = ?)"
            f"{bounds} ORDER BY ledger_tags.received_at_ms DESC, entry_id DESC LIMIT ?")

        def page(conn: sqlite3.Connection) -> list[LedgerEntry]:
            found: list[LedgerEntry] = []
            before = scan.before
            while True:
                entries = [_entry(row) for row in conn.execute(
                    select, (scan.tag, *(scan.since or ()), *(before or ()), limit))]
                found += [entry for entry in entries if query.matches(entry)]
                if len(entries) < limit or len(found) >= limit:
                    return found[:limit]
                before = entries[-1].cursor

        return await self._reader.run(page)

    async def ledger_entry(self, entry_id: int) -> LedgerEntry | None:
        return await self._reader.run(lambda conn: _entry_by_id(conn, entry_id))

    async def settle(self, entry_id: int, settlement: Settlement) -> LedgerEntry | None:
        def update(conn: sqlite3.Connection) -> LedgerEntry | None:
            entry = _entry_by_id(conn, entry_id)
            decision = decide_settlement(entry, settlement) if entry is not None else None
            if decision is None:
                return None
            conn.execute("UPDATE provider_notifications"
                         " SET settled_at_ms = ?, settled_by = ?, settled_note = ? WHERE id = ?",
                         (settlement.settled_at_ms, settlement.settled_by, settlement.note,
                          entry_id))
            _untag(conn, decision.entry, decision.untag)
            _tag(conn, [(decision.entry, decision.tag)])
            return decision.entry

        return await self._writer.run_in_transaction(update)

    async def count_refund(self, stream_id: str, at_ms: int, amount: int) -> None:
        def count(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO sales_hourly (hour_ms, stream_id, refunded) VALUES (?, ?, ?)"
                " ON CONFLICT (hour_ms, stream_id) DO UPDATE SET"
                " refunded = refunded + excluded.refunded",
                (hour_start(at_ms), stream_id, amount))

        await self._writer.run_in_transaction(count)

    async def sales(self, from_ms: int, to_ms: int) -> list[SalesBucket]:
        def select(conn: sqlite3.Connection) -> list[SalesBucket]:
            rows = conn.execute(
                "SELECT stream_id, hour_ms, qrs_created, tickets_sold, takings, refunded"
                " FROM sales_hourly WHERE hour_ms >= ? AND hour_ms < ?"
                " ORDER BY hour_ms, stream_id", (from_ms, to_ms)).fetchall()
            return [SalesBucket(stream_id=row["stream_id"], hour_ms=row["hour_ms"],
                                qrs_created=row["qrs_created"],
                                tickets_sold=row["tickets_sold"], takings=row["takings"],
                                refunded=row["refunded"])
                    for row in rows]

        return await self._reader.run(select)


def replayed(conn: sqlite3.Connection, replay_key: str) -> bool:
    """Whether this exact delivery was recorded before."""
    return conn.execute("SELECT 1 FROM provider_notifications WHERE replay_key = ?",
                        (replay_key,)).fetchone() is not None


def event_recorded(conn: sqlite3.Connection, note: Notification) -> bool:
    """Whether the provider's event was recorded before (under any delivery)."""
    return conn.execute(
        "SELECT 1 FROM provider_notifications WHERE provider = ? AND event_id = ?",
        (note.provider, note.event_id)).fetchone() is not None


def record_entry(conn: sqlite3.Connection, note: Notification, decision: PaymentDecision,
                 stream_id: str | None) -> None:
    """Append a notification and what was made of it, listed under its tags."""
    entry_id = conn.execute(
        "INSERT INTO provider_notifications (provider, event_id, trx_id, session_id,"
        " amount, reported_status, paid_at_ms, received_at_ms, replay_key, applied,"
        " reason, raw_body, fee, stream_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (note.provider, note.event_id, note.trx_id, decision.session_id, note.amount,
         note.reported_status, note.paid_at_ms, note.received_at_ms, note.replay_key,
         int(decision.applied), decision.reason.value, note.raw_body, note.fee, stream_id),
    ).lastrowid
    assert entry_id is not None
    entry = LedgerEntry(entry_id, note, decision.applied, decision.reason.value,
                        decision.session_id, stream_id)
    _tag(conn, [(entry, ledger_tags(entry))])


def count_sale(conn: sqlite3.Connection, stream_id: str, at_ms: int, *, qrs: int = 0,
               tickets: int = 0, takings: int = 0) -> None:
    conn.execute(
        "INSERT INTO sales_hourly (hour_ms, stream_id, qrs_created, tickets_sold, takings)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (hour_ms, stream_id) DO UPDATE SET"
        " qrs_created = qrs_created + excluded.qrs_created,"
        " tickets_sold = tickets_sold + excluded.tickets_sold,"
        " takings = takings + excluded.takings",
        (hour_start(at_ms), stream_id, qrs, tickets, takings),
    )


def tag_the_ledger(conn: sqlite3.Connection) -> None:
    """Every entry stored so far, listed under the tags the model gives it: a migration
    (a change to `ledger_tags` needs this once more), and the bench's fill."""
    conn.execute("DELETE FROM ledger_tags")
    last_id = 0
    while True:
        entries = [_entry(row) for row in conn.execute(
            f"SELECT {_LEDGER_COLUMNS} FROM provider_notifications WHERE id > ?"
            " ORDER BY id LIMIT 1000", (last_id,))]
        if not entries:
            return
        _tag(conn, ((entry, ledger_tags(entry)) for entry in entries))
        last_id = entries[-1].entry_id


def _entry(row: sqlite3.Row) -> LedgerEntry:
    return LedgerEntry(
        entry_id=row["id"],
        notification=Notification(
            provider=row["provider"], event_id=row["event_id"], trx_id=row["trx_id"],
            amount=row["amount"], reported_status=row["reported_status"],
            paid_at_ms=row["paid_at_ms"], received_at_ms=row["received_at_ms"],
            raw_body=row["raw_body"], replay_key=row["replay_key"], fee=row["fee"]),
        applied=bool(row["applied"]), reason=row["reason"], session_id=row["session_id"],
        stream_id=row["stream_id"],
        settlement=None if row["settled_at_ms"] is None else Settlement(
            row["settled_at_ms"], row["settled_by"], row["settled_note"]),
    )


def _entry_by_id(conn: sqlite3.Connection, entry_id: int) -> LedgerEntry | None:
    row = conn.execute(f"SELECT {_LEDGER_COLUMNS} FROM provider_notifications WHERE id = ?",
                       (entry_id,)).fetchone()
    return _entry(row) if row else None


def _tag(conn: sqlite3.Connection, tagged: Iterable[tuple[LedgerEntry, Iterable[str]]]
         ) -> None:
    """List entries under tags, each tag's name stored once."""
    rows = [(entry.notification.received_at_ms, entry.entry_id, tag)
            for entry, tags in tagged for tag in tags]
    conn.executemany("INSERT OR IGNORE INTO ledger_tag_names (tag) VALUES (?)",
                     [(tag,) for tag in {tag for _, _, tag in rows}])
    conn.executemany("INSERT INTO ledger_tags (tag_id, received_at_ms, entry_id)"
                     " SELECT tag_id, ?, ? FROM ledger_tag_names WHERE tag = ?", rows)


def _untag(conn: sqlite3.Connection, entry: LedgerEntry, tags: Iterable[str]) -> None:
    conn.executemany(
        "DELETE FROM ledger_tags WHERE tag_id = (SELECT tag_id FROM ledger_tag_names"
        " WHERE tag = ?) AND received_at_ms = ? AND entry_id = ?",
        [(tag, entry.notification.received_at_ms, entry.entry_id) for tag in tags])
