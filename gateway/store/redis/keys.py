"""Every Redis key of the store, under a prefix (default `gateway:`), so that several
deployments can share one server. Names never change: data written by an earlier
version must still read. Each part writes its own keys; a part that must read
another's (sessions' `paid_now` reads `sales_streams`) says so.
"""

from __future__ import annotations

from urllib.parse import quote


def part(value: str) -> str:
    """A key component that cannot contain the separator, whatever the viewer id is."""
    return quote(value, safe="")


class Keys:
    """The key names, by the part that writes them."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        # Payment sessions: sorted sets for the sweeper's due, prunable and ended-early
        # queries, reconciliation and the operator's listing.
        self.due = prefix + "due"  # active sessions by expires_at_ms
        self.prunable = prefix + "unpaid-expired"  # never paid, expired, by expires_at_ms
        # Paid and over, by the end of the paid window (when their tokens expire).
        self.ended = prefix + "paid-expired"
        self.created = prefix + "by-creation"  # every session, by created_at_ms
        self.unpaid = prefix + "unpaid"  # never paid (pending or expired), by created_at_ms
        self.console_indexed = prefix + "console-indexed"  # set once the console's indexes
        # and sales counters were built for what an earlier version stored
        # The ledger.
        self.notification_ids = prefix + "notification-seq"
        self.notifications = prefix + "notifications"  # ids by id: newest is highest
        # Every stream with sales counters: every stream a session was ever made for,
        # since each QR is counted. Sessions' paid_now reads it too.
        self.sales_streams = prefix + "sales-streams"
        self.ledger_tagged = prefix + "ledger-tagged"  # set once every entry is tagged
        # The change feed.
        self.changes = prefix + "session-changes"
        # Refunds and cancelled shows.
        self.refunds = prefix + "refunds"  # every refund id, by when it was asked for
        self.refunds_unanswered = prefix + "refunds-unanswered"  # by when last asked
        self.cancelled_streams = prefix + "cancelled-streams"  # stream id -> JSON

    # --- payment sessions ---------------------------------------------------------

    def session(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    def trx(self, provider: str, trx_id: str) -> str:
        return f"{self.prefix}trx:{part(provider)}:{part(trx_id)}"

    def active(self, user_id: str, stream_id: str) -> str:
        """Names the viewer's active session for the stream (rule 1's lock)."""
        return f"{self.prefix}active:{part(user_id)}:{part(stream_id)}"

    def user_active(self, user_id: str) -> str:
        return f"{self.prefix}user-active:{part(user_id)}"

    def user_paid(self, user_id: str) -> str:
        """Every session the viewer ever paid, by paid_at_ms ("Tiket saya")."""
        return f"{self.prefix}user-paid:{part(user_id)}"

    def user_sessions(self, user_id: str) -> str:
        return f"{self.prefix}user-sessions:{part(user_id)}"  # by created_at_ms

    def paid_now(self, stream_id: str) -> str:
        return f"{self.prefix}paid-now:{part(stream_id)}"  # by expires_at_ms

    # --- the ledger -----------------------------------------------------------------

    def notification(self, number: int) -> str:
        return f"{self.prefix}notification:{number}"

    def notifications_by_trx(self, trx_id: str) -> str:
        return f"{self.prefix}notifications-by-trx:{part(trx_id)}"

    def replay(self, replay_key: str) -> str:
        return f"{self.prefix}replay:{part(replay_key)}"

    def event(self, provider: str, event_id: str) -> str:
        return f"{self.prefix}event:{part(provider)}:{part(event_id)}"

    def ledger_tag(self, tag: str) -> str:
        """The entries listed under one tag (gateway/ledger.py:ledger_tags), scored by
        time. Tags are URL-encoded: they hold no separator."""
        return f"{self.prefix}ledger-tag:{tag}"

    def sales(self, stream_id: str) -> str:
        """Hourly counters of one stream: fields q:, t:, a: and r:<hour_ms> (QRs, tickets,
        takings, refunded)."""
        return f"{self.prefix}sales:{part(stream_id)}"

    # --- device grants --------------------------------------------------------------

    def grant(self, grant_id: str) -> str:
        return f"{self.prefix}grant:{part(grant_id)}"

    def device_grant(self, session_id: str, device: str) -> str:
        return f"{self.prefix}device-grant:{part(session_id)}:{part(device)}"

    def session_grants(self, session_id: str) -> str:
        return f"{self.prefix}session-grants:{part(session_id)}"

    def places(self, session_id: str) -> str:
        return f"{self.prefix}places:{part(session_id)}"

    # --- media keys -------------------------------------------------------------------

    def media_key(self, stream_id: str, key_id: str) -> str:
        """One AES-128 key of keys delivery (hex)."""
        return f"{self.prefix}media-key:{part(stream_id)}:{part(key_id)}"

    # --- counters ---------------------------------------------------------------------

    def rate(self, bucket: str, window: int) -> str:
        """One bucket's count in one fixed window."""
        return f"{self.prefix}rate:{part(bucket)}:{window}"

    def pace(self, bucket: str) -> str:
        """A paced bucket's next free moment, in ms (counters.reserve)."""
        return f"{self.prefix}pace:{part(bucket)}"

    # --- the line of buyers waiting for a QR -------------------------------------------

    @property
    def line(self) -> str:
        """Who waits, by place: a sorted set of line members (fair score and arrival)."""
        return f"{self.prefix}line"

    @property
    def line_entries(self) -> str:
        """Each member's entry: address, when it joined, fair score and arrival, one
        per line (store/redis/line.py)."""
        return f"{self.prefix}line-entries"

    @property
    def line_lanes(self) -> str:
        """Per address, the fair score of its last entry; and the line's virtual clock."""
        return f"{self.prefix}line-lanes"

    @property
    def line_seq(self) -> str:
        return f"{self.prefix}line-seq"

    # --- refunds and cancelled shows -------------------------------------------------

    def refund(self, refund_id: str) -> str:
        return f"{self.prefix}refund:{part(refund_id)}"

    def refunds_of(self, trx_id: str) -> str:
        """A payment's refund ids, scored by their number."""
        return f"{self.prefix}refunds-of:{part(trx_id)}"

    def refunds_by_status(self, status: str) -> str:
        """Refund ids of one status, by when they were asked for."""
        return f"{self.prefix}refunds-status:{status}"

    def refund_by_provider_id(self, provider_refund_id: str) -> str:
        return f"{self.prefix}refund-by-provider:{part(provider_refund_id)}"

    def ended_sign_in(self, sign_in_id: str) -> str:
        """A console sign-in ended early (signed out), expiring with its cookie."""
        return f"{self.prefix}ended-sign-in:{part(sign_in_id)}"
