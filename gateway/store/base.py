"""The store interface. Every backend passes `tests/store/test_contract.py`.

Atomicity is the store's job (rule 1 across requests, processes and instances; the
rules are stated in `gateway/model.py`); what the rows *mean* is not. A store reads
rows as stored, hands them to the model's pure decisions inside its transaction
(`decide_new_session`, `decide_payment`, `decide_revocation`, `expire_stale`), and
writes back what they return. It never decides on its own that a session is over.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from gateway.device_model import DeviceGrant, DevicePlace, PlaceClaim
from gateway.ledger import LedgerEntry, LedgerQuery, SalesBucket, Settlement
from gateway.model import (
    Notification,
    PaymentContext,
    PaymentDecision,
    PaymentSession,
    SessionStatus,
    current_session,
)


@dataclass(frozen=True, slots=True)
class StoredNotification:
    """One row of the notification ledger: what arrived and what we did with it."""

    notification: Notification
    applied: bool
    reason: str
    session_id: str | None


class SessionStore(abc.ABC):
    @abc.abstractmethod
    async def get(self, session_id: str) -> PaymentSession | None: ...

    @abc.abstractmethod
    async def get_many(self, session_ids: list[str]) -> list[PaymentSession]:
        """The sessions that exist among `session_ids`, in one trip to the store."""

    @abc.abstractmethod
    async def get_by_trx(self, provider: str, trx_id: str) -> PaymentSession | None: ...

    @abc.abstractmethod
    async def active_for_stream(
        self, user_id: str, stream_id: str, now_ms: int
    ) -> list[PaymentSession]:
        """The viewer's sessions for the stream that are pending or paid and unexpired:
        one, or two when a paid next window waits behind the current one (rule 2's
        exception); oldest first."""

    async def find_active(
        self, user_id: str, stream_id: str, now_ms: int
    ) -> PaymentSession | None:
        """The viewer's active session for the stream that matters now (the one
        granting access, else a pending QR, else a paid ticket waiting to open)."""
        return current_session(await self.active_for_stream(user_id, stream_id, now_ms),
                               now_ms)

    @abc.abstractmethod
    async def list_paid(self, user_id: str, limit: int) -> list[PaymentSession]:
        """The viewer's sessions that were ever paid, newest payment first."""

    @abc.abstractmethod
    async def list_active(self, user_id: str, now_ms: int) -> list[PaymentSession]:
        """The viewer's pending and paid unexpired sessions, oldest first (ties by id, so
        every backend gives the same order)."""

    @abc.abstractmethod
    async def insert_pending(
        self, candidate: PaymentSession, now_ms: int
    ) -> tuple[PaymentSession, bool]:
        """Atomically, as `model.decide_new_session` says over the viewer's active
        sessions for the stream: store `candidate` (its `renews` as the decision sets
        it) and return it and True; or return the session that is shown again or that
        refuses, and False. Stale rows (active status, past expiry) are written back
        expired in the same transaction."""

    @abc.abstractmethod
    async def apply_notification(
        self,
        notification: Notification,
        decide: Callable[[PaymentContext], PaymentDecision],
    ) -> PaymentDecision:
        """Atomically: record the notification with `decide`'s outcome and write the
        sessions it changed. A notification whose `replay_key` was seen before changes
        nothing and comes back with reason `replayed`."""

    @abc.abstractmethod
    async def expire_due(self, now_ms: int, limit: int) -> list[PaymentSession]:
        """Mark up to `limit` active sessions past expiry as expired; return them."""

    @abc.abstractmethod
    async def prune_unpaid(self, expired_before_ms: int, limit: int) -> int:
        """Delete up to `limit` never-paid sessions that expired before the given time.
        Paid sessions are the sales ledger and are never deleted."""

    @abc.abstractmethod
    async def end_paid_session(self, session_id: str, now_ms: int) -> PaymentSession | None:
        """Atomically end a paid, unexpired session now (refund, revocation): status
        expired, expiry now. None when the session was not paid and active."""

    @abc.abstractmethod
    async def ended_early(self, now_ms: int) -> list[PaymentSession]:
        """Expired paid sessions whose access tokens still live at `now_ms` (the end of
        their paid window, `paid_until_ms`, is later): every session whose access was
        ended before its natural expiry and whose tokens could still look valid."""

    @abc.abstractmethod
    async def notifications(self, trx_id: str | None = None,
                            limit: int = 100) -> list[StoredNotification]:
        """The notification ledger, newest first."""

    # --- the operator's console: answered from indexes and counters kept on every
    # write, never by reading every session (see gateway/ledger.py) ---

    @abc.abstractmethod
    async def ledger(self, query: LedgerQuery, limit: int) -> list[LedgerEntry]:
        """Ledger entries matching `query`, newest first (by received time, then entry
        id), at most `limit`."""

    @abc.abstractmethod
    async def ledger_entry(self, entry_id: int) -> LedgerEntry | None: ...

    @abc.abstractmethod
    async def settle(self, entry_id: int, settlement: Settlement) -> LedgerEntry | None:
        """Atomically record that a person dealt with an entry that needs one. None when
        there is no such entry, it needs nobody, or it was settled already. Changes no
        session: settling is bookkeeping, never a payment."""

    @abc.abstractmethod
    async def sales(self, from_ms: int, to_ms: int) -> list[SalesBucket]:
        """The non-empty hourly sales counters of hours starting in [from_ms, to_ms),
        by hour then stream. QRs count in the hour they were created, tickets in the
        hour they were paid."""

    @abc.abstractmethod
    async def paid_now(self, now_ms: int) -> dict[str, int]:
        """Per stream with any, how many sessions are paid and not yet over."""

    @abc.abstractmethod
    async def sessions_of_user(self, user_id: str, limit: int) -> list[PaymentSession]:
        """The viewer's sessions of any status, newest first (ties by id)."""

    @abc.abstractmethod
    async def playing_now(self, now_ms: int, since_ms: int) -> dict[str, int]:
        """Per stream with any, the places (a grant at a client address, SPEC Devices)
        seen playing after `since_ms`, of sessions paid and not over at `now_ms`."""

    # Playback grants and the places they play from (SPEC, Devices). Places are kept by
    # the store so that instances sharing it share one count per purchase.

    @abc.abstractmethod
    async def grant_for_device(self, session_id: str, device: str, now_ms: int,
                               new_grant_id: str, playing_since_ms: int
                               ) -> tuple[DeviceGrant, list[DevicePlace]]:
        """Atomically: the device's current (unended) grant for the session, or a new
        one with `new_grant_id`, so that one device never holds two. With it, in the
        same trip to the store, what `playing(session_id, playing_since_ms)` returns:
        check-access needs both, for every page load."""

    @abc.abstractmethod
    async def get_grant(self, grant_id: str) -> DeviceGrant | None: ...

    @abc.abstractmethod
    async def grants(self, session_id: str) -> list[DeviceGrant]:
        """Every grant of the session, ended ones too, oldest first (ties by id)."""

    @abc.abstractmethod
    async def end_grant(self, grant_id: str, now_ms: int) -> DeviceGrant | None:
        """Atomically end a grant and free its places. An ended grant comes back as it
        was ended (idempotent); an unknown one is None. The device's next request for a
        grant gets a new one."""

    @abc.abstractmethod
    async def claim_place(self, session_id: str, grant_id: str, address: str, now_ms: int,
                          since_ms: int, limit: int) -> PlaceClaim:
        """Atomically: forget the session's places last seen at or before `since_ms`;
        then, for a grant of the session that is not ended, renew its place at
        `address` or take a new one if fewer than `limit` are held (0: no limit). A
        grant that is ended, unknown or of another session is ENDED."""

    @abc.abstractmethod
    async def playing(self, session_id: str, since_ms: int) -> list[DevicePlace]:
        """The session's places seen after `since_ms`, longest playing first."""

    @abc.abstractmethod
    async def unpaid_created_between(self, created_after_ms: int, created_before_ms: int,
                                     limit: int) -> list[PaymentSession]:
        """Never-paid sessions (pending or expired) created in (after, before], oldest
        first: the ones to ask the provider about."""

    @abc.abstractmethod
    async def payments(self, status: SessionStatus | None, stream_id: str | None,
                       limit: int) -> list[PaymentSession]:
        """Sessions, newest first, optionally of one status and one stream (the status
        as stored: the sweeper may not have marked the latest expiries yet)."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return once the store has answered a trivial request (readiness)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    # Rate limits. An embedded store serves one process: its counters live in memory.
    # A shared store keeps them where every instance counts together.
    _hits: dict[str, tuple[int, int]] | None = None

    async def count_hit(self, bucket: str, window_s: int, now_ms: int) -> int:
        """Count one hit against `bucket` in the current fixed window of `window_s`
        seconds and return the window's count so far, this hit included."""
        window = now_ms // (window_s * 1000)
        if self._hits is None or len(self._hits) > 100_000:
            # Bounded: old windows are dropped wholesale rather than one by one.
            self._hits = {key: hit for key, hit in (self._hits or {}).items()
                          if hit[0] == window}
        seen_window, count = self._hits.get(bucket, (window, 0))
        count = count + 1 if seen_window == window else 1
        self._hits[bucket] = (window, count)
        return count

    # Status changes across instances. An embedded store has one instance: nothing to
    # tell anyone. A shared store publishes every change and lets each instance listen.
    shared: bool = False

    async def publish_change(self, session: PaymentSession) -> None:
        """Tell the other instances sharing this store that a session changed."""
        return None  # an embedded store has no other instances

    def changes(self, on_subscribed: Callable[[], Awaitable[None]]
                ) -> AsyncIterator[PaymentSession]:
        """Sessions changed by other instances, from the moment `on_subscribed` is
        called (so the caller can resync what it may have missed before that). Only
        for a shared store."""
        raise NotImplementedError
