"""The use cases of payment sessions: request a QR, learn of a payment, check access,
revoke, sweep. The rules themselves, and the types, are in `gateway/model.py`; this
module drives them through the store's payment sessions and the provider interface,
and tells listeners of every status change (and, through the store's change feed,
the other instances). No HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from gateway import qris
from gateway.catalog import Catalog, Stream
from gateway.clock import Clock
from gateway.errors import (
    AlreadyHasAccess,
    AmountMismatch,
    NotYours,
    ProviderReturnedInvalidQris,
    SessionNotFound,
    StoreUnavailable,
    UnknownStream,
)
from gateway.logs import log_event
from gateway.model import (
    ENDED_BY_REVOCATION,
    AccessDecision,
    Notification,
    NotificationReason,
    PaymentContext,
    PaymentDecision,
    PaymentSession,
    SessionStatus,
    StatusListener,
    StreamTerms,
    SweepReport,
    current_session,
    decide_new_session,
    decide_payment,
    ended_early_ticket,
    new_session_id,
)
from gateway.providers.base import Provider
from gateway.store.base import Changes, PaymentSessions

log = logging.getLogger("gateway.sessions")

# How many of a viewer's newest purchases check-access looks through for the ticket of
# the stream that was ended early: a viewer buys a few streams, not hundreds.
ENDED_LOOKUP_LIMIT = 20


class SessionService:
    """The use cases: request a QR, learn of a payment, check access, sweep."""

    def __init__(
        self,
        sessions: PaymentSessions,
        changes: Changes,
        provider: Provider,
        catalog: Catalog,
        clock: Clock,
        *,
        access_seconds: int,
        payment_window_seconds: int,
        unpaid_retention_seconds: int,
    ) -> None:
        self._sessions = sessions
        self._changes = changes
        self.provider = provider
        self.catalog = catalog
        self.clock = clock
        self.access_ms = access_seconds * 1000
        self.payment_window_ms = payment_window_seconds * 1000
        self.unpaid_retention_ms = unpaid_retention_seconds * 1000
        self._listeners: list[StatusListener] = []
        self._recorded_listeners: list[Callable[[Notification], Awaitable[None]]] = []
        # (userId, streamId) -> the creation under way in this process: a viewer's
        # concurrent requests share it (one provider transaction, one rate-limit hit).
        self._creating: dict[tuple[str, str], asyncio.Future[PaymentSession]] = {}

    def add_listener(self, listener: StatusListener) -> None:
        """Called with a session's new state on every status change: made by this
        process, or (with a shared store) by another instance."""
        self._listeners.append(listener)

    async def _changed(self, session: PaymentSession) -> None:
        self.notify_listeners(session)
        try:
            await self._changes.publish(session)
        except StoreUnavailable:  # stored already; other instances catch up on resync
            log_event(log, "session_change_not_published", level=logging.WARNING,
                      sessionId=session.session_id)

    async def announce(self, session: PaymentSession) -> None:
        """Tell listeners here and on other instances of a session made for a buyer who
        waited in line (gateway/line.py): their WebSocket may be held anywhere."""
        await self._changed(session)

    async def active_for_stream(self, user_id: str, stream_id: str) -> list[PaymentSession]:
        """The viewer's pending or paid unexpired sessions for the stream, as stored."""
        return await self._sessions.active_for_stream(user_id, stream_id, self.clock())

    def notify_listeners(self, session: PaymentSession) -> None:
        """Tell this process's listeners of a status change, made here or by another
        instance sharing the store."""
        for listener in self._listeners:
            try:
                listener(session)
            except Exception:  # one broken listener must not stop payments
                log.exception("status listener failed")

    async def request_qr(
        self, user_id: str, stream_id: str, amount: int | None,
        admit: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[PaymentSession, bool]:
        """Rules 1-2. Returns the session and whether it was created by this call.
        `admit` runs only before a new session is made (a provider transaction, with a
        real provider): it may refuse, e.g. a rate limit. Returning the pending one is
        never refused."""
        stream = self.catalog.get(stream_id)
        if stream is None:
            raise UnknownStream()
        if amount is not None and amount != stream.price:
            raise AmountMismatch(price=stream.price)
        now_ms = self.clock()
        # A first look, outside any transaction, so that a refusal or a QR to show
        # again costs no provider call. The store decides again, atomically.
        probe = PaymentSession("", user_id, stream_id, "", "", stream.price, 0, "",
                               SessionStatus.PENDING, now_ms, None, now_ms)
        looked = decide_new_session(
            probe, await self._sessions.active_for_stream(user_id, stream_id, now_ms), now_ms)
        if not looked.inserted:
            return self._reuse(looked.session, now_ms), False
        key = (user_id, stream_id)
        under_way = self._creating.get(key)
        if under_way is not None:
            return self._reuse(await asyncio.shield(under_way), now_ms), False
        creating: asyncio.Future[PaymentSession] = asyncio.get_running_loop().create_future()
        self._creating[key] = creating
        try:
            session, created = await self._create(user_id, stream, now_ms,
                                                  looked.session.renews, admit)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                creating.set_exception(exc)
                creating.exception()  # retrieved: the joiners re-raise it themselves
            else:
                creating.cancel()
            raise
        finally:
            del self._creating[key]
        creating.set_result(session)
        return session, created

    async def _create(self, user_id: str, stream: Stream, now_ms: int, renews: str | None,
                      admit: Callable[[], Awaitable[None]] | None
                      ) -> tuple[PaymentSession, bool]:
        stream_id = stream.stream_id
        if admit is not None:
            await admit()

        session_id = new_session_id()
        expires_at_ms = now_ms + self.payment_window_ms
        created = await self.provider.create_qris(session_id, stream.price, expires_at_ms)
        # The payer is asked for the price plus whatever fee the provider adds on top.
        found = qris.problems_for_transaction(created.qr_string, stream.price + created.fee,
                                              created.qr_reference)
        if found:
            log_event(log, "provider_qris_rejected", level=logging.ERROR,
                      provider=self.provider.name, trxId=created.trx_id, problems=found)
            await self._withdraw(created.trx_id)
            raise ProviderReturnedInvalidQris()
        candidate = PaymentSession(
            session_id=session_id,
            user_id=user_id,
            stream_id=stream_id,
            provider=self.provider.name,
            trx_id=created.trx_id,
            amount=stream.price,
            fee=created.fee,
            qr_string=created.qr_string,
            status=SessionStatus.PENDING,
            created_at_ms=now_ms,
            paid_at_ms=None,
            expires_at_ms=expires_at_ms,
        )
        stored, inserted = await self._sessions.insert_pending(
            replace(candidate, renews=renews), now_ms)
        if not inserted:
            # A concurrent request by the same viewer won; its QR is the one to show.
            log_event(log, "qris_discarded_after_race", sessionId=session_id,
                      trxId=created.trx_id, streamId=stream_id)
            await self._withdraw(created.trx_id)
            return self._reuse(stored, now_ms), False
        log_event(log, "session_created", sessionId=session_id, trxId=created.trx_id,
                  streamId=stream_id, amount=stream.price, status="pending",
                  renews=stored.renews)
        return stored, True

    async def _withdraw(self, trx_id: str) -> None:
        """End a provider transaction no viewer will ever see, where the API allows, so
        it cannot be paid. Best effort: if it is paid anyway, it is recorded as an
        unknown transaction in the ledger."""
        try:
            await self.provider.cancel(trx_id)
        except Exception:
            log.warning("could not cancel an unused provider transaction %s", trx_id)

    def _reuse(self, existing: PaymentSession, now_ms: int) -> PaymentSession:
        if existing.status_at(now_ms) == SessionStatus.PAID:
            raise AlreadyHasAccess()
        return existing

    async def owned_session(
        self, owner: str | None, *, session_id: str | None = None, trx_id: str | None = None
    ) -> PaymentSession:
        """A session by id and/or trxId (both must name the same one) that belongs to
        `owner`; None stands for a trusted server caller, who may see any."""
        session = None
        if session_id is not None:
            session = await self._sessions.get(session_id)
        elif trx_id is not None:
            session = await self._sessions.get_by_trx(self.provider.name, trx_id)
        if session is None or (trx_id is not None and session.trx_id != trx_id):
            raise SessionNotFound()
        if owner is not None and session.user_id != owner:
            raise NotYours()
        return session

    async def check_access(
        self, user_id: str, stream_id: str, session_id: str | None
    ) -> AccessDecision:
        """Rule 4. Without a sessionId, the caller's active session for the stream."""
        if self.catalog.get(stream_id) is None:
            raise UnknownStream()
        now_ms = self.clock()
        active = await self._sessions.active_for_stream(user_id, stream_id, now_ms)
        if session_id is not None:
            session: PaymentSession | None = await self.owned_session(
                user_id, session_id=session_id
            )
        else:
            session = current_session(active, now_ms)
        granted = session is not None and session.grants_access(user_id, stream_id, now_ms)
        remaining_ms = session.remaining_ms(now_ms) if session is not None and granted else 0
        waiting = (session is not None and session.stream_id == stream_id
                   and session.waiting_at(now_ms))
        following = next((other for other in active if granted and session is not None
                          and other.renews == session.session_id
                          and other.status_at(now_ms) == SessionStatus.PAID), None)
        # Nothing active: was the last ticket taken away? Only then a second read (the
        # viewer's few purchases, newest first), so a viewer who never paid costs one.
        ended = (ended_early_ticket(await self._sessions.list_paid(user_id, ENDED_LOOKUP_LIMIT),
                                    stream_id, now_ms)
                 if session is None and session_id is None else None)
        log_event(log, "access_decision", sessionId=session.session_id if session else None,
                  trxId=session.trx_id if session else None, streamId=stream_id,
                  granted=granted,
                  sessionStatus=session.status_at(now_ms) if session else None,
                  endedReason=ended.ended_reason if ended else None)
        return AccessDecision(granted, stream_id, session, remaining_ms,
                              starts_in_ms=session.starts_in_ms(now_ms)
                              if waiting and session is not None else None,
                              next_session=following, ended=ended)

    async def active_sessions(self, user_id: str) -> list[PaymentSession]:
        return await self._sessions.list_active(user_id, self.clock())

    async def sessions_by_id(self, session_ids: list[str]) -> list[PaymentSession]:
        """The sessions that exist among `session_ids`, as stored, in one trip."""
        return await self._sessions.get_many(session_ids)

    async def unpaid_created_between(self, created_after_ms: int, created_before_ms: int,
                                     limit: int) -> list[PaymentSession]:
        """Never-paid sessions created in (after, before], oldest first: the ones to ask
        the provider about (reconcile.py)."""
        return await self._sessions.unpaid_created_between(created_after_ms,
                                                           created_before_ms, limit)

    async def record_notification(self, notification: Notification) -> PaymentDecision:
        """Rule 3: store every verified notification and apply it if it pays a session."""
        decision = await self._sessions.apply_notification(
            notification, lambda context: decide_payment(context, self._terms(context))
        )
        if decision.reason == NotificationReason.REPLAYED:
            # The exact bytes we already recorded (signature and all): typically the
            # provider retrying a request that timed out while we applied it. It must
            # hear "done" or it retries for a day; it changes nothing, and the ledger
            # already holds it, so it is not stored twice.
            log_event(log, "notification_redelivered", trxId=notification.trx_id,
                      eventId=notification.event_id)
            return PaymentDecision(False, NotificationReason.DUPLICATE_EVENT, None)
        log_event(log, "notification_recorded", eventId=notification.event_id,
                  trxId=notification.trx_id, sessionId=decision.session_id,
                  applied=decision.applied, reason=decision.reason,
                  amount=notification.amount)
        for session in decision.changed:
            self._log_state(session, "payment_applied" if session.status == SessionStatus.PAID
                            else "session_superseded")
            await self._changed(session)
        for listener in self._recorded_listeners:
            try:
                await listener(notification)
            except StoreUnavailable:
                raise  # recorded already: the provider's retry finds it a duplicate
            except Exception:  # one broken listener must not fail a recorded payment
                log.exception("notification listener failed")
        return decision

    def on_recorded(self, listener: Callable[[Notification], Awaitable[None]]) -> None:
        """Told of every notification once it is recorded (refunds hear of theirs)."""
        self._recorded_listeners.append(listener)

    def _terms(self, context: PaymentContext) -> StreamTerms:
        stream = (self.catalog.get(context.session.stream_id)
                  if context.session is not None else None)
        if stream is None:  # unknown transaction, or a stream since removed
            return StreamTerms(self.access_ms)
        return StreamTerms(stream.access_seconds_or(self.access_ms // 1000) * 1000,
                           stream.starts_at_ms)

    async def by_trx(self, trx_id: str) -> PaymentSession | None:
        """The session of one of our provider's transactions, if it is ours."""
        return await self._sessions.get_by_trx(self.provider.name, trx_id)

    async def tickets_of(self, stream_id: str, limit: int = 100_000) -> list[PaymentSession]:
        """Every session ever paid for the stream, newest first: its tickets."""
        return [session for session in await self._sessions.payments(None, stream_id, limit)
                if session.paid_at_ms is not None]

    async def purchases(self, user_id: str, limit: int = 100) -> list[PaymentSession]:
        """The viewer's paid sessions, newest payment first: what they bought."""
        return await self._sessions.list_paid(user_id, limit)

    async def revoke(self, session_id: str, reason: str,
                     ended_by: str = ENDED_BY_REVOCATION) -> PaymentSession:
        """End a paid session now (an operator's revocation, a refund, a cancelled show:
        `ended_by` says which, and the viewer is told). Idempotent: revoking a session
        that is not paid and active changes nothing and returns it as it is."""
        ended = await self._sessions.end_paid_session(session_id, self.clock(), ended_by)
        if ended is None:
            session = await self._sessions.get(session_id)
            if session is None:
                raise SessionNotFound()
            return session
        log_event(log, "session_revoked", sessionId=ended.session_id, trxId=ended.trx_id,
                  streamId=ended.stream_id, reason=reason, paidAt=ended.paid_at_ms)
        await self._changed(ended)
        return ended

    async def ended_early(self) -> list[PaymentSession]:
        """Sessions whose access was ended before its natural expiry and whose access
        tokens still live (`model.tokens_live_until_ms`), so could look valid."""
        return await self._sessions.ended_early(self.clock())

    async def sweep(self, batch_size: int = 500) -> SweepReport:
        """Rule 5: mark expired sessions (telling listeners) and prune stale unpaid ones,
        in bounded batches so one sweep never holds the store for long."""
        now_ms = self.clock()
        expired = 0
        while True:
            batch = await self._sessions.expire_due(now_ms, batch_size)
            for session in batch:
                self._log_state(session, "session_expired")
                await self._changed(session)
            expired += len(batch)
            if len(batch) < batch_size:
                break
        pruned = 0
        while True:
            count = await self._sessions.prune_unpaid(now_ms - self.unpaid_retention_ms, batch_size)
            pruned += count
            if count < batch_size:
                break
        return SweepReport(expired=expired, pruned=pruned)

    def _log_state(self, session: PaymentSession, event: str) -> None:
        log_event(log, event, sessionId=session.session_id, trxId=session.trx_id,
                  streamId=session.stream_id, status=session.status,
                  paidAt=session.paid_at_ms, expiresAt=session.expires_at_ms)
