"""SQLite's schema: the migrations that build it, one version (PRAGMA user_version)
each, run once in one transaction when a store is opened."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from gateway.store.sqlite.ledger import tag_the_ledger

# "Active" as the partial indexes say it: a query says it the same way to use them.
ACTIVE = "status IN ('pending', 'paid')"

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
        ON payment_sessions (user_id, stream_id) WHERE {ACTIVE};
    CREATE INDEX payment_sessions_due ON payment_sessions (expires_at_ms) WHERE {ACTIVE};
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
        ON payment_sessions (user_id, stream_id, coalesce(renews, '')) WHERE {ACTIVE};
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
    """
    -- Console sign-ins ended early (signed out), until their cookie would have expired.
    CREATE TABLE ended_sign_ins (
        sign_in_id TEXT PRIMARY KEY,
        until_ms   INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Status changes for the other processes sharing this file (sqlite/changes.py).
    CREATE TABLE session_changes (
        seq    INTEGER PRIMARY KEY AUTOINCREMENT,
        origin TEXT NOT NULL,
        body   TEXT NOT NULL
    );
    """,
    """
    -- Why a session's access ended before its time (model.PaymentSession.ended_reason).
    ALTER TABLE payment_sessions ADD COLUMN ended_reason TEXT;
    -- Money going back (refund_model.py): a refund's id is its idempotency key.
    CREATE TABLE refunds (
        refund_id          TEXT PRIMARY KEY,
        trx_id             TEXT NOT NULL,
        provider           TEXT NOT NULL,
        number             INTEGER NOT NULL,
        amount             INTEGER NOT NULL CHECK (amount > 0),
        reason             TEXT NOT NULL,
        status             TEXT NOT NULL
            CHECK (status IN ('requested', 'succeeded', 'failed', 'manual')),
        requested_at_ms    INTEGER NOT NULL,
        updated_at_ms      INTEGER NOT NULL,
        requested_by       TEXT NOT NULL,
        session_id         TEXT,
        stream_id          TEXT,
        provider_refund_id TEXT,
        failure_code       TEXT,
        note               TEXT NOT NULL DEFAULT '',
        attempts           INTEGER NOT NULL DEFAULT 0,
        by_hand            INTEGER NOT NULL DEFAULT 0,
        UNIQUE (trx_id, number)
    ) WITHOUT ROWID;
    CREATE INDEX refunds_by_time ON refunds (requested_at_ms);
    CREATE INDEX refunds_by_status ON refunds (status, requested_at_ms);
    CREATE INDEX refunds_by_provider_id ON refunds (provider_refund_id)
        WHERE provider_refund_id IS NOT NULL;
    CREATE INDEX refunds_unanswered ON refunds (updated_at_ms)
        WHERE status = 'requested' AND provider_refund_id IS NULL;
    -- Tickets given back, by the hour they went back: out of that hour's takings.
    ALTER TABLE sales_hourly ADD COLUMN refunded INTEGER NOT NULL DEFAULT 0;
    -- Shows called off, whatever the catalog says.
    CREATE TABLE cancelled_streams (
        stream_id       TEXT PRIMARY KEY,
        reason          TEXT NOT NULL,
        cancelled_at_ms INTEGER NOT NULL,
        cancelled_by    TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    """
    -- GATEWAY_DELIVERY=keys: the AES-128 keys media is encrypted with, made once per
    -- stream and key id by whichever process asks first (store/sqlite/media_keys.py).
    CREATE TABLE media_keys (
        stream_id TEXT NOT NULL,
        key_id    TEXT NOT NULL,
        key       BLOB NOT NULL CHECK (length(key) = 16),
        PRIMARY KEY (stream_id, key_id)
    ) WITHOUT ROWID;
    """,
    """
    -- Buyers waiting for a QR (store/sqlite/line.py), served by (score, seq): fair by
    -- address (line_model.py). One entry per viewer and stream.
    CREATE TABLE line (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id      TEXT NOT NULL,
        stream_id    TEXT NOT NULL,
        address      TEXT NOT NULL,
        score        INTEGER NOT NULL,
        joined_at_ms INTEGER NOT NULL,
        UNIQUE (user_id, stream_id)
    );
    CREATE INDEX line_order ON line (score, seq);
    -- Per address with entries waiting, its last score, and the line's virtual clock.
    CREATE TABLE line_lanes (
        address    TEXT PRIMARY KEY,
        last_score INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
)


def migrate(conn: sqlite3.Connection) -> None:
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

