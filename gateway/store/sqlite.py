"""SQLite store: the embedded default.

- Durable: WAL with `synchronous=FULL`, so a committed payment survives `kill -9` and a
  power cut. A payment is worth an fsync (about 0.25 ms on this class of disk).
- Atomic: every write is one `BEGIN IMMEDIATE` transaction (it takes the write lock up
  front, so two processes on one file serialise instead of failing at COMMIT), and a
  partial unique index makes "one active session per viewer and stream" a constraint
  the file itself enforces.
- Off the event loop: all calls run on two dedicated threads, one connection each: a
  writer, and a reader that WAL lets run while a write is being fsynced. An in-memory
  database is one connection, so it gets one thread for both. Calls queued while a
  thread is busy are run as one batch (see `_Connection`).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gateway.device_model import DeviceGrant, DevicePlace, PlaceClaim, decide_claim
from gateway.errors import StoreUnavailable
from gateway.ledger import (
    LedgerEntry,
    LedgerQuery,
    SalesBucket,
    Settlement,
    decide_settlement,
    hour_start,
    ledger_tags,
)
from gateway.model import (
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
from gateway.store.base import SessionStore, StoredNotification

T = TypeVar("T")

_SESSION_COLUMNS = (
    "session_id, user_id, stream_id, provider, trx_id, amount, fee, qr_string, status,"
    " created_at_ms, paid_at_ms, expires_at_ms, starts_at_ms, renews, paid_until_ms"
)
_ACTIVE = "status IN ('pending', 'paid')"

# The ledger's columns, named with their table: a listing joins them to its tags.
_LEDGER_COLUMNS = ", ".join(f"provider_notifications.{column}" for column in (
    "provider", "event_id", "trx_id", "amount", "reported_status", "paid_at_ms",
    "received_at_ms", "raw_body", "replay_key", "applied", "reason", "session_id", "id",
    "stream_id", "settled_at_ms", "settled_by", "settled_note", "fee"))


def _ledger_entry(row: sqlite3.Row) -> LedgerEntry:
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


def _tag(conn: sqlite3.Connection, tagged: Iterable[tuple[LedgerEntry, Iterable[str]]]
         ) -> None:
    """List entries under tags (ledger_tags), each tag's name stored once."""
    rows = [(entry.notification.received_at_ms, entry.entry_id, tag)
            for entry, tags in tagged for tag in tags]
    conn.executemany("INSERT OR IGNORE INTO ledger_tag_names (tag) VALUES (?)",
                     [(tag,) for tag in {tag for _, _, tag in rows}])
    conn.executemany("INSERT INTO ledger_tags (tag_id, received_at_ms, entry_id)"
                     " SELECT tag_id, ?, ? FROM ledger_tag_names WHERE tag = ?", rows)


def _entry_by_id(conn: sqlite3.Connection, entry_id: int) -> LedgerEntry | None:
    row = conn.execute(f"SELECT {_LEDGER_COLUMNS} FROM provider_notifications WHERE id = ?",
                       (entry_id,)).fetchone()
    return _ledger_entry(row) if row else None


def _untag(conn: sqlite3.Connection, entry: LedgerEntry, tags: Iterable[str]) -> None:
    conn.executemany(
        "DELETE FROM ledger_tags WHERE tag_id = (SELECT tag_id FROM ledger_tag_names"
        " WHERE tag = ?) AND received_at_ms = ? AND entry_id = ?",
        [(tag, entry.notification.received_at_ms, entry.entry_id) for tag in tags])


def tag_the_ledger(conn: sqlite3.Connection) -> None:
    """Every entry stored so far, listed under the tags the model gives it: a migration
    (a change to `ledger_tags` needs this once more), and the bench's fill."""
    conn.execute("DELETE FROM ledger_tags")
    last_id = 0
    while True:
        entries = [_ledger_entry(row) for row in conn.execute(
            f"SELECT {_LEDGER_COLUMNS} FROM provider_notifications WHERE id > ?"
            " ORDER BY id LIMIT 1000", (last_id,))]
        if not entries:
            return
        _tag(conn, ((entry, ledger_tags(entry)) for entry in entries))
        last_id = entries[-1].entry_id


# Each entry upgrades the schema by one version (PRAGMA user_version): a script, or a
# function for what SQL cannot say. Append, never edit.
MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    f"""
    CREATE TABLE payment_sessions (
        session_id    TEXT PRIMARY KEY,
        user_id       TEXT NOT NULL,
        stream_id     TEXT NOT NULL,
        provider      TEXT NOT NULL,
        trx_id        TEXT NOT NULL,
        amount        INTEGER NOT NULL CHECK (amount > 0),
        fee           INTEGER NOT NULL DEFAULT 0,
        qr_string     TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'expired')),
        created_at_ms INTEGER NOT NULL,
        paid_at_ms    INTEGER,
        expires_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX payment_sessions_by_trx ON payment_sessions (provider, trx_id);
    -- Rule 1 as a constraint: at most one pending-or-paid row per viewer and stream.
    CREATE UNIQUE INDEX payment_sessions_one_active
        ON payment_sessions (user_id, stream_id) WHERE {_ACTIVE};
    CREATE INDEX payment_sessions_due ON payment_sessions (expires_at_ms) WHERE {_ACTIVE};
    CREATE INDEX payment_sessions_prunable ON payment_sessions (expires_at_ms)
        WHERE status = 'expired' AND paid_at_ms IS NULL;

    CREATE TABLE provider_notifications (
        id              INTEGER PRIMARY KEY,
        provider        TEXT NOT NULL,
        event_id        TEXT NOT NULL,
        trx_id          TEXT NOT NULL,
        session_id      TEXT,
        amount          INTEGER NOT NULL,
        reported_status TEXT NOT NULL,
        paid_at_ms      INTEGER,
        received_at_ms  INTEGER NOT NULL,
        replay_key      TEXT UNIQUE,
        applied         INTEGER NOT NULL,
        reason          TEXT NOT NULL,
        raw_body        TEXT NOT NULL
    );
    CREATE INDEX provider_notifications_by_event ON provider_notifications (provider, event_id);
    CREATE INDEX provider_notifications_by_trx ON provider_notifications (trx_id);
    """,
    """
    -- Sessions ended before their time, reloaded by the HLS gate at start-up.
    CREATE INDEX payment_sessions_ended ON payment_sessions (paid_at_ms)
        WHERE status = 'expired' AND paid_at_ms IS NOT NULL;
    """,
    """
    -- What a payer paid above the price (provider fees), kept beside the compared amount.
    ALTER TABLE provider_notifications ADD COLUMN fee INTEGER NOT NULL DEFAULT 0;
    -- Unpaid sessions by creation, for reconciliation with the provider's status API.
    CREATE INDEX payment_sessions_unpaid ON payment_sessions (created_at_ms)
        WHERE paid_at_ms IS NULL;
    CREATE INDEX payment_sessions_by_creation ON payment_sessions (created_at_ms);
    """,
    """
    -- Playback grants: one per purchase and device (SPEC, Devices).
    CREATE TABLE playback_grants (
        grant_id      TEXT PRIMARY KEY,
        session_id    TEXT NOT NULL,
        device        TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        ended_at_ms   INTEGER
    ) WITHOUT ROWID;
    -- A device holds one live grant per purchase, whoever races to make it.
    CREATE UNIQUE INDEX playback_grants_current ON playback_grants (session_id, device)
        WHERE ended_at_ms IS NULL;
    CREATE INDEX playback_grants_by_session ON playback_grants (session_id, created_at_ms);
    -- Where each grant was last seen playing: one row per grant and client address.
    CREATE TABLE device_places (
        session_id    TEXT NOT NULL,
        grant_id      TEXT NOT NULL,
        address       TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms  INTEGER NOT NULL,
        PRIMARY KEY (session_id, grant_id, address)
    ) WITHOUT ROWID;
    CREATE INDEX device_places_by_last_seen ON device_places (last_seen_ms);
    """,
    f"""
    -- Tickets ahead and renewals: when access opens, and which window this continues.
    ALTER TABLE payment_sessions ADD COLUMN starts_at_ms INTEGER;
    ALTER TABLE payment_sessions ADD COLUMN renews TEXT;
    UPDATE payment_sessions SET starts_at_ms = paid_at_ms WHERE paid_at_ms IS NOT NULL;
    -- Rule 1, with its one exception: besides the current session, one renewal of it.
    DROP INDEX payment_sessions_one_active;
    CREATE UNIQUE INDEX payment_sessions_one_active
        ON payment_sessions (user_id, stream_id, coalesce(renews, '')) WHERE {_ACTIVE};
    DROP INDEX payment_sessions_ended;
    CREATE INDEX payment_sessions_ended ON payment_sessions (starts_at_ms)
        WHERE status = 'expired' AND paid_at_ms IS NOT NULL;
    -- A viewer's purchases ("Tiket saya").
    CREATE INDEX payment_sessions_paid_by_user ON payment_sessions (user_id, paid_at_ms)
        WHERE paid_at_ms IS NOT NULL;
    """,
    r"""
    -- The operator's console (gateway/ledger.py): the ledger filtered by stream, reason,
    -- outcome and time without reading it all, settlements, and sales counted per
    -- stream and hour as payments happen.
    ALTER TABLE provider_notifications ADD COLUMN stream_id TEXT;
    ALTER TABLE provider_notifications ADD COLUMN needs_person INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE provider_notifications ADD COLUMN settled_at_ms INTEGER;
    ALTER TABLE provider_notifications ADD COLUMN settled_by TEXT;
    ALTER TABLE provider_notifications ADD COLUMN settled_note TEXT;
    UPDATE provider_notifications SET stream_id = (
        SELECT stream_id FROM payment_sessions
        WHERE payment_sessions.session_id = provider_notifications.session_id);
    UPDATE provider_notifications SET needs_person = 1
        WHERE reason IN ('amount_mismatch', 'duplicate_payment_refund_due',
                         'unknown_transaction')
           OR reason LIKE '%\_refund\_due' ESCAPE '\';
    CREATE INDEX ledger_by_time ON provider_notifications (received_at_ms, id);
    CREATE INDEX ledger_by_stream ON provider_notifications (stream_id, received_at_ms, id);
    CREATE INDEX ledger_by_reason ON provider_notifications (reason, received_at_ms, id);
    CREATE INDEX ledger_by_stream_reason
        ON provider_notifications (stream_id, reason, received_at_ms, id);
    CREATE INDEX ledger_by_outcome ON provider_notifications (applied, received_at_ms, id);
    CREATE INDEX ledger_attention ON provider_notifications (received_at_ms, id)
        WHERE needs_person = 1 AND settled_at_ms IS NULL;
    CREATE INDEX ledger_settled ON provider_notifications (received_at_ms, id)
        WHERE settled_at_ms IS NOT NULL;
    CREATE INDEX payment_sessions_by_user ON payment_sessions (user_id, created_at_ms);
    CREATE INDEX payment_sessions_paid ON payment_sessions (stream_id, expires_at_ms)
        WHERE status = 'paid';
    CREATE TABLE sales_hourly (
        hour_ms      INTEGER NOT NULL,
        stream_id    TEXT NOT NULL,
        qrs_created  INTEGER NOT NULL DEFAULT 0,
        tickets_sold INTEGER NOT NULL DEFAULT 0,
        takings      INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (hour_ms, stream_id)
    ) WITHOUT ROWID;
    INSERT INTO sales_hourly (hour_ms, stream_id, qrs_created)
        SELECT created_at_ms - created_at_ms % 3600000, stream_id, COUNT(*)
        FROM payment_sessions WHERE true GROUP BY 1, 2;
    INSERT INTO sales_hourly (hour_ms, stream_id, tickets_sold, takings)
        SELECT paid_at_ms - paid_at_ms % 3600000, stream_id, COUNT(*), SUM(amount)
        FROM payment_sessions WHERE paid_at_ms IS NOT NULL GROUP BY 1, 2
        ON CONFLICT (hour_ms, stream_id) DO UPDATE SET
            tickets_sold = excluded.tickets_sold, takings = excluded.takings;
    """,
    """
    -- The end of the window a payment bought, which access tokens carry: an early end
    -- (revocation, refund) moves expires_at_ms, not this (model.tokens_live_until_ms).
    -- Rows paid before it was kept get their expiry, the best there is to know.
    ALTER TABLE payment_sessions ADD COLUMN paid_until_ms INTEGER;
    UPDATE payment_sessions SET paid_until_ms = expires_at_ms WHERE paid_at_ms IS NOT NULL;
    -- Sessions ended early whose tokens still live, reloaded by the gate at start-up.
    DROP INDEX payment_sessions_ended;
    CREATE INDEX payment_sessions_ended ON payment_sessions (paid_until_ms)
        WHERE status = 'expired' AND paid_at_ms IS NOT NULL;
    """,
    """
    -- The ledger's lists (gateway/ledger.py:ledger_tags): every entry under each tag
    -- the model gives it, by time, so that any filter reads one stretch of one index.
    -- They replace the indexes (and the needs_person column) that said in SQL what
    -- each filter means.
    CREATE TABLE ledger_tag_names (
        tag_id INTEGER PRIMARY KEY,
        tag    TEXT NOT NULL UNIQUE
    );
    CREATE TABLE ledger_tags (
        tag_id         INTEGER NOT NULL,
        received_at_ms INTEGER NOT NULL,
        entry_id       INTEGER NOT NULL,
        PRIMARY KEY (tag_id, received_at_ms, entry_id)
    ) WITHOUT ROWID;
    DROP INDEX ledger_by_time;
    DROP INDEX ledger_by_stream;
    DROP INDEX ledger_by_reason;
    DROP INDEX ledger_by_stream_reason;
    DROP INDEX ledger_by_outcome;
    DROP INDEX ledger_attention;
    DROP INDEX ledger_settled;
    ALTER TABLE provider_notifications DROP COLUMN needs_person;
    """,
    tag_the_ledger,
)

def _count_sale(conn: sqlite3.Connection, stream_id: str, at_ms: int, *, qrs: int = 0,
                tickets: int = 0, takings: int = 0) -> None:
    conn.execute(
        "INSERT INTO sales_hourly (hour_ms, stream_id, qrs_created, tickets_sold, takings)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (hour_ms, stream_id) DO UPDATE SET"
        " qrs_created = qrs_created + excluded.qrs_created,"
        " tickets_sold = tickets_sold + excluded.tickets_sold,"
        " takings = takings + excluded.takings",
        (hour_start(at_ms), stream_id, qrs, tickets, takings),
    )


_GRANT_COLUMNS = "grant_id, session_id, device, created_at_ms, ended_at_ms"
_PLACE_COLUMNS = "grant_id, address, first_seen_ms, last_seen_ms"


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


def _session(row: sqlite3.Row) -> PaymentSession:
    return PaymentSession(
        session_id=row["session_id"], user_id=row["user_id"], stream_id=row["stream_id"],
        provider=row["provider"], trx_id=row["trx_id"], amount=row["amount"],
        fee=row["fee"], qr_string=row["qr_string"], status=SessionStatus(row["status"]),
        created_at_ms=row["created_at_ms"], paid_at_ms=row["paid_at_ms"],
        expires_at_ms=row["expires_at_ms"], starts_at_ms=row["starts_at_ms"],
        renews=row["renews"], paid_until_ms=row["paid_until_ms"],
    )


def _write_state(conn: sqlite3.Connection, sessions: Sequence[PaymentSession]) -> None:
    """Store the new states the model decided (the only columns that ever change)."""
    conn.executemany(
        "UPDATE payment_sessions SET status = ?, paid_at_ms = ?, expires_at_ms = ?,"
        " starts_at_ms = ?, renews = ?, paid_until_ms = ? WHERE session_id = ?",
        [(session.status.value, session.paid_at_ms, session.expires_at_ms,
          session.starts_at_ms, session.renews, session.paid_until_ms, session.session_id)
         for session in sessions],
    )


class _Connection:
    """One SQLite connection owned by one thread; every call hops onto that thread.

    A hop costs ~80 us on a small VM, ten times a primary-key query, so the thread
    drains every job queued since it last woke and hands all their results back to the
    event loop in one wake-up: under load, the hop is paid once per batch, not per call.
    """

    def __init__(self, path: str, *, read_only: bool,
                 on_connect: Callable[[sqlite3.Connection], None] | None,
                 timeout_s: float) -> None:
        self._path = path
        self._timeout_s = timeout_s
        self._read_only = read_only
        self._on_connect = on_connect
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, daemon=True,
                                        name="sqlite-" + ("reader" if read_only else "writer"))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        # Another process holding the write lock is waited for this long, then the
        # call fails (a 503), rather than queueing everything behind it unseen.
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=self._timeout_s,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row  # rows by column name, never by position
        conn.execute(f"PRAGMA busy_timeout = {int(self._timeout_s * 1000)}")
        if self._path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        if self._read_only:
            conn.execute("PRAGMA query_only = ON")
        if self._on_connect is not None:
            self._on_connect(conn)
        return conn

    def _work(self) -> None:
        assert self._loop is not None
        conn = self._connect()
        try:
            running = True
            while running:
                batch = [self._jobs.get()]
                while True:
                    try:
                        batch.append(self._jobs.get_nowait())
                    except queue.Empty:
                        break
                outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
                for job in batch:
                    if job is None:
                        running = False
                        continue
                    fn, future, deadline = job
                    if time.monotonic() > deadline:
                        # Its caller has been told the store is unavailable: doing it
                        # now would surprise them (and keep the queue long).
                        outcomes.append((future, None, StoreUnavailable()))
                        continue
                    try:
                        outcomes.append((future, fn(conn), None))
                    except sqlite3.OperationalError as exc:
                        # Locked or busy past busy_timeout (another process writes).
                        outcomes.append((future, None, StoreUnavailable()
                                         if _is_contention(exc) else exc))
                    except BaseException as exc:  # delivered to the awaiting coroutine
                        outcomes.append((future, None, exc))
                if outcomes:
                    self._loop.call_soon_threadsafe(_deliver, outcomes)
        finally:
            conn.close()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("store is closed")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._thread.start()
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((fn, future, time.monotonic() + self._timeout_s))
        try:
            # A little past the job's own deadline: the thread answers by then, unless
            # one statement runs that long.
            async with asyncio.timeout(self._timeout_s + 1):
                return await asyncio.shield(future)
        except TimeoutError:
            # Whatever the thread makes of it, nobody is waiting for it now.
            future.add_done_callback(_discard_outcome)
            future.cancel()
            raise StoreUnavailable() from None

    async def run_in_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def transaction(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self.run(transaction)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)


_Job = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", float]


def _discard_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not report it as lost


def _is_contention(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def _deliver(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class SQLiteStore(SessionStore):
    def __init__(self, path: str,
                 on_connect: Callable[[sqlite3.Connection], None] | None = None,
                 timeout_s: float = 5.0) -> None:
        self.path = path
        self._writer = _Connection(path, read_only=False, on_connect=on_connect,
                                   timeout_s=timeout_s)
        in_memory = path == ":memory:"
        self._reader = (self._writer if in_memory
                        else _Connection(path, read_only=True, on_connect=on_connect,
                                         timeout_s=timeout_s))

    @classmethod
    async def open(cls, path: str,
                   on_connect: Callable[[sqlite3.Connection], None] | None = None,
                   timeout_s: float = 5.0) -> SQLiteStore:
        """`on_connect` sees each new connection (e.g. to trace SQL while debugging)."""
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        store = cls(path, on_connect, timeout_s)
        await store._writer.run(_migrate)
        return store

    async def ping(self) -> None:
        # Through the writer, taking the write lock: a stuck write transaction, ours or
        # another process's, is what would make us unready.
        def take_write_lock(conn: sqlite3.Connection) -> None:
            if self.path != ":memory:":
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")

        await self._writer.run(take_write_lock)

    async def close(self) -> None:
        if self._reader is not self._writer:
            await self._reader.close()
        await self._writer.close()

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
                f" WHERE user_id = ? AND stream_id = ? AND {_ACTIVE}"
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
                f" WHERE user_id = ? AND {_ACTIVE} ORDER BY created_at_ms, session_id",
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
                f" WHERE user_id = ? AND stream_id = ? AND {_ACTIVE}",
                (candidate.user_id, candidate.stream_id),
            ).fetchall()
            decision = decide_new_session(candidate, map(_session, rows), now_ms)
            _write_state(conn, decision.expired)
            if not decision.inserted:
                return decision.session, False
            stored = decision.session  # the candidate, as a renewal or not
            conn.execute(
                f"INSERT INTO payment_sessions ({_SESSION_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (stored.session_id, stored.user_id, stored.stream_id,
                 stored.provider, stored.trx_id, stored.amount, stored.fee,
                 stored.qr_string, stored.status.value, stored.created_at_ms,
                 stored.paid_at_ms, stored.expires_at_ms, stored.starts_at_ms,
                 stored.renews, stored.paid_until_ms),
            )
            _count_sale(conn, stored.stream_id, stored.created_at_ms, qrs=1)
            return stored, True

        return await self._writer.run_in_transaction(insert)

    async def apply_notification(
        self,
        notification: Notification,
        decide: Callable[[PaymentContext], PaymentDecision],
    ) -> PaymentDecision:
        note = notification

        def apply(conn: sqlite3.Connection) -> PaymentDecision:
            if note.replay_key is not None and conn.execute(
                "SELECT 1 FROM provider_notifications WHERE replay_key = ?", (note.replay_key,)
            ).fetchone():
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
                        f" WHERE user_id = ? AND stream_id = ? AND {_ACTIVE}"
                        " AND session_id != ?",
                        (session.user_id, session.stream_id, session.session_id),
                    )
                )
            seen = conn.execute(
                "SELECT 1 FROM provider_notifications WHERE provider = ? AND event_id = ?",
                (note.provider, note.event_id),
            ).fetchone()
            decision = decide(PaymentContext(note, session, seen is not None, others))
            _write_state(conn, decision.writes)
            for changed in decision.changed:
                if changed.status == SessionStatus.PAID and changed.paid_at_ms is not None:
                    _count_sale(conn, changed.stream_id, changed.paid_at_ms, tickets=1,
                                takings=changed.amount)
            stream_id = session.stream_id if session is not None else None
            number = conn.execute(
                "INSERT INTO provider_notifications (provider, event_id, trx_id, session_id,"
                " amount, reported_status, paid_at_ms, received_at_ms, replay_key, applied,"
                " reason, raw_body, fee, stream_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (note.provider, note.event_id, note.trx_id, decision.session_id, note.amount,
                 note.reported_status, note.paid_at_ms, note.received_at_ms, note.replay_key,
                 int(decision.applied), decision.reason.value, note.raw_body, note.fee,
                 stream_id),
            ).lastrowid
            assert number is not None
            entry = LedgerEntry(number, note, decision.applied, decision.reason.value,
                                decision.session_id, stream_id)
            _tag(conn, [(entry, ledger_tags(entry))])
            return decision

        return await self._writer.run_in_transaction(apply)

    async def expire_due(self, now_ms: int, limit: int) -> list[PaymentSession]:
        def expire(conn: sqlite3.Connection) -> list[PaymentSession]:
            # The index finds the candidates; the model says which are over.
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM payment_sessions"
                f" WHERE {_ACTIVE} AND expires_at_ms <= ? ORDER BY expires_at_ms LIMIT ?",
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

    async def end_paid_session(self, session_id: str, now_ms: int) -> PaymentSession | None:
        def end(conn: sqlite3.Connection) -> PaymentSession | None:
            row = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM payment_sessions WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            ended = decide_revocation(_session(row), now_ms) if row else None
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

    async def notifications(self, trx_id: str | None = None,
                            limit: int = 100) -> list[StoredNotification]:
        def query(conn: sqlite3.Connection) -> list[StoredNotification]:
            where, params = ("WHERE trx_id = ?", [trx_id]) if trx_id is not None else ("", [])
            rows = conn.execute(
                "SELECT provider, event_id, trx_id, amount, reported_status, paid_at_ms,"
                " received_at_ms, raw_body, replay_key, applied, reason, session_id, fee"
                f" FROM provider_notifications {where} ORDER BY id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
            return [
                StoredNotification(
                    Notification(
                        provider=row["provider"], event_id=row["event_id"],
                        trx_id=row["trx_id"], amount=row["amount"],
                        reported_status=row["reported_status"],
                        paid_at_ms=row["paid_at_ms"], received_at_ms=row["received_at_ms"],
                        raw_body=row["raw_body"], replay_key=row["replay_key"],
                        fee=row["fee"],
                    ),
                    applied=bool(row["applied"]), reason=row["reason"],
                    session_id=row["session_id"],
                )
                for row in rows
            ]

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
                entries = [_ledger_entry(row) for row in conn.execute(
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

    async def sales(self, from_ms: int, to_ms: int) -> list[SalesBucket]:
        def select(conn: sqlite3.Connection) -> list[SalesBucket]:
            rows = conn.execute(
                "SELECT stream_id, hour_ms, qrs_created, tickets_sold, takings"
                " FROM sales_hourly WHERE hour_ms >= ? AND hour_ms < ?"
                " ORDER BY hour_ms, stream_id", (from_ms, to_ms)).fetchall()
            return [SalesBucket(stream_id=row["stream_id"], hour_ms=row["hour_ms"],
                                qrs_created=row["qrs_created"],
                                tickets_sold=row["tickets_sold"], takings=row["takings"])
                    for row in rows]

        return await self._reader.run(select)

    async def paid_now(self, now_ms: int) -> dict[str, int]:
        def select(conn: sqlite3.Connection) -> dict[str, int]:
            return {row["stream_id"]: row["paid"] for row in conn.execute(
                "SELECT stream_id, COUNT(*) AS paid FROM payment_sessions"
                " WHERE status = 'paid' AND expires_at_ms > ? GROUP BY stream_id",
                (now_ms,))}

        return await self._reader.run(select)

    async def playing_now(self, now_ms: int, since_ms: int) -> dict[str, int]:
        def select(conn: sqlite3.Connection) -> dict[str, int]:
            # Counted here rather than by GROUP BY: the places seen in the last seconds
            # are the ones playing, few next to the ledger, read by their index.
            return dict(Counter(row["stream_id"] for row in conn.execute(
                "SELECT payment_sessions.stream_id AS stream_id FROM device_places"
                " JOIN payment_sessions USING (session_id)"
                " WHERE device_places.last_seen_ms > ? AND payment_sessions.status = 'paid'"
                " AND payment_sessions.expires_at_ms > ?", (since_ms, now_ms))))

        return await self._reader.run(select)

    async def sessions_of_user(self, user_id: str, limit: int) -> list[PaymentSession]:
        def select(conn: sqlite3.Connection) -> list[PaymentSession]:
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM payment_sessions WHERE user_id = ?"
                " ORDER BY created_at_ms DESC, session_id DESC LIMIT ?",
                (user_id, limit)).fetchall()
            return [_session(row) for row in rows]

        return await self._reader.run(select)


def _places(conn: sqlite3.Connection, session_id: str) -> list[DevicePlace]:
    return [_place(row) for row in conn.execute(
        f"SELECT {_PLACE_COLUMNS} FROM device_places WHERE session_id = ?", (session_id,))]


def _playing(conn: sqlite3.Connection, session_id: str, since_ms: int) -> list[DevicePlace]:
    return [_place(row) for row in conn.execute(
        f"SELECT {_PLACE_COLUMNS} FROM device_places"
        " WHERE session_id = ? AND last_seen_ms > ?"
        " ORDER BY first_seen_ms, grant_id, address", (session_id, since_ms))]


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            if isinstance(script, str):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            else:
                script(conn)
            conn.execute(f"PRAGMA user_version = {number}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")

