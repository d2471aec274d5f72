"""What the operator reads: the ledger and its reports (sales, who holds access and
who plays now), the sessions to look into, and the one bookkeeping write, settling an
entry. The console (handlers/admin.py) and the API's operator listings read through
here, never the store. No HTTP; the clock is injected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.device_model import PLAYING_WINDOW_MS
from gateway.ledger import LedgerEntry, LedgerQuery, SalesBucket, Settlement
from gateway.model import PaymentSession, SessionStatus
from gateway.store.base import DeviceGrants, Ledger, PaymentSessions


@dataclass(frozen=True, slots=True)
class Audience:
    """Per stream with any: the sessions paid and not over, and the places (a grant
    at a client address, SPEC Devices) playing them."""

    paid: dict[str, int]
    playing: dict[str, int]


class Reports:
    def __init__(self, ledger: Ledger, sessions: PaymentSessions, grants: DeviceGrants,
                 clock: Clock, provider: str, playing_window_ms: int = PLAYING_WINDOW_MS
                 ) -> None:
        self._provider = provider  # whose transaction ids the sessions carry
        # A place plays while the gate saw it within this (keys delivery: a rotation).
        self._playing_window_ms = playing_window_ms
        self._ledger = ledger
        self._sessions = sessions
        self._grants = grants
        self._clock = clock

    # --- the ledger ---------------------------------------------------------------

    async def ledger(self, query: LedgerQuery, limit: int) -> list[LedgerEntry]:
        """Entries matching `query`, newest first, at most `limit`."""
        return await self._ledger.ledger(query, limit)

    async def notifications(self, trx_id: str | None, limit: int) -> list[LedgerEntry]:
        """Every notification in the order it was recorded, newest first; or one
        transaction's."""
        return await self._ledger.notifications(trx_id, limit)

    async def settle(self, entry_id: int, settlement: Settlement) -> LedgerEntry | None:
        """Record that a person dealt with an entry that needs one (never a payment).
        None when it needs nobody, or was settled already."""
        return await self._ledger.settle(entry_id, settlement)

    async def prices(self, entries: Iterable[LedgerEntry]) -> dict[str, int]:
        """What each entry's session costs, by session id: what a short or duplicate
        payment should have been. One trip to the store."""
        sessions = await self._sessions.get_many(
            [entry.session_id for entry in entries if entry.session_id])
        return {session.session_id: session.amount for session in sessions}

    # --- sales and audience ---------------------------------------------------------

    async def sales(self, from_ms: int, to_ms: int) -> list[SalesBucket]:
        """The hourly sales counters of hours starting in [from_ms, to_ms)."""
        return await self._ledger.sales(from_ms, to_ms)

    async def audience_now(self) -> Audience:
        now_ms = self._clock()
        paid = await self._sessions.paid_now(now_ms)
        places = await self._grants.playing_counts(
            [session_id for ids in paid.values() for session_id in ids],
            now_ms - self._playing_window_ms)
        playing = {stream_id: sum(places.get(session_id, 0) for session_id in ids)
                   for stream_id, ids in paid.items()}
        return Audience(paid={stream_id: len(ids) for stream_id, ids in paid.items()},
                        playing={stream_id: count for stream_id, count in playing.items()
                                 if count})

    # --- sessions -------------------------------------------------------------------

    async def payments(self, status: SessionStatus | None, stream_id: str | None,
                       limit: int) -> list[PaymentSession]:
        """Sessions, newest first, optionally of one status (as stored) and stream."""
        return await self._sessions.payments(status, stream_id, limit)

    async def session(self, session_id: str) -> PaymentSession | None:
        return await self._sessions.get(session_id)

    async def session_by_trx(self, trx_id: str) -> PaymentSession | None:
        return await self._sessions.get_by_trx(self._provider, trx_id)

    async def sessions_of_user(self, user_id: str, limit: int) -> list[PaymentSession]:
        """The viewer's sessions of any status, newest first."""
        return await self._sessions.sessions_of_user(user_id, limit)
