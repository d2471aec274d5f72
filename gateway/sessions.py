"""The payment-session rules (SPEC, "The payment session"), free of HTTP.

Everything here takes the time as a parameter or from an injected clock, so expiry is
tested by moving a clock, not by waiting. The store guarantees atomicity; the decisions
about what a notification does are the pure function `decide_payment`, which the store
calls inside its transaction.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from gateway import qris
from gateway.catalog import Catalog
from gateway.clock import Clock
from gateway.errors import (
    AlreadyHasAccess,
    AmountMismatch,
    NotificationRejected,
    NotYours,
    ProviderReturnedInvalidQris,
    SessionNotFound,
    UnknownStream,
)
from gateway.logs import log_event

if TYPE_CHECKING:
    from gateway.providers.base import Provider
    from gateway.store.base import SessionStore

log = logging.getLogger("gateway.sessions")


class SessionStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    EXPIRED = "expired"


ACTIVE_STATUSES = (SessionStatus.PENDING, SessionStatus.PAID)
# Rule 2's exception: in the last ten minutes of a paid window the viewer may buy the
# next one, which starts where the current one ends.
RENEWAL_WINDOW_MS = 10 * 60 * 1000


@dataclass(frozen=True, slots=True)
class PaymentSession:
    session_id: str
    user_id: str
    stream_id: str
    provider: str
    trx_id: str
    amount: int
    fee: int
    qr_string: str
    status: SessionStatus
    created_at_ms: int
    paid_at_ms: int | None
    expires_at_ms: int
    # Once paid: when access opens (payment, the stream's start, or the end of the
    # window this one continues). None while unpaid.
    starts_at_ms: int | None = None
    # The paid session this one continues without a gap (rule 2's exception), if any.
    renews: str | None = None

    def status_at(self, now_ms: int) -> SessionStatus:
        """Expiry is exact on every read, whatever the sweeper has got round to."""
        if self.status in ACTIVE_STATUSES and now_ms >= self.expires_at_ms:
            return SessionStatus.EXPIRED
        return self.status

    def remaining_ms(self, now_ms: int) -> int:
        return max(0, self.expires_at_ms - now_ms)

    def is_active(self, now_ms: int) -> bool:
        return self.status_at(now_ms) in ACTIVE_STATUSES

    def grants_access(self, user_id: str, stream_id: str, now_ms: int) -> bool:
        """Rule 4: paid, the caller's, this stream, and startsAt <= now < expiresAt."""
        return (
            self.user_id == user_id
            and self.stream_id == stream_id
            and self.status_at(now_ms) == SessionStatus.PAID
            and not self.waiting_at(now_ms)
        )

    def waiting_at(self, now_ms: int) -> bool:
        """Paid, but its window has not opened yet: a ticket bought ahead, or the next
        window of a viewer still watching the current one."""
        return (self.status_at(now_ms) == SessionStatus.PAID
                and self.starts_at_ms is not None and now_ms < self.starts_at_ms)

    def starts_in_ms(self, now_ms: int) -> int:
        return max(0, (self.starts_at_ms or now_ms) - now_ms)


@dataclass(frozen=True, slots=True)
class Notification:
    """What a provider told us, after its signature was verified, in neutral terms."""

    provider: str
    event_id: str
    trx_id: str
    amount: int
    reported_status: str  # "paid", or the provider's own word for anything else
    paid_at_ms: int | None
    received_at_ms: int
    raw_body: str
    # Identifies this exact signed delivery, so a captured request cannot be replayed.
    replay_key: str | None = None


class NotificationReason(StrEnum):
    PAID = "paid"
    PAID_AFTER_WINDOW = "paid_after_payment_window"
    DUPLICATE_EVENT = "duplicate_event"
    ALREADY_PAID = "already_paid"
    AMOUNT_MISMATCH = "amount_mismatch"
    UNKNOWN_TRANSACTION = "unknown_transaction"
    DUPLICATE_PAYMENT = "duplicate_payment_refund_due"
    NOT_A_PAYMENT = "not_a_payment"
    REPLAYED = "replayed"


@dataclass(frozen=True, slots=True)
class PaymentContext:
    """What the store read inside its transaction for one notification."""

    notification: Notification
    session: PaymentSession | None
    event_already_recorded: bool
    # The viewer's other sessions that are active now for the same stream.
    other_active: tuple[PaymentSession, ...]


@dataclass(frozen=True, slots=True)
class PaymentDecision:
    applied: bool
    reason: NotificationReason
    session_id: str | None
    # New states to write, in order (superseded sessions before the one being paid, so
    # that "one active session per viewer and stream" holds after every statement).
    changed: tuple[PaymentSession, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamTerms:
    """What a payment buys for one stream: its access window, and when it opens at the
    earliest (the stream's starts_at, for tickets bought ahead)."""

    access_ms: int
    opens_at_ms: int | None = None


def decide_payment(context: PaymentContext, terms: StreamTerms) -> PaymentDecision:
    """Rule 3: what a verified notification does. Pure: no I/O, no clock.

    The window opens at the latest of: payment, the stream's start, and (for a renewal
    whose session is still paid) the end of the window it continues."""
    note, session = context.notification, context.session
    session_id = session.session_id if session else None

    def refuse(reason: NotificationReason) -> PaymentDecision:
        return PaymentDecision(applied=False, reason=reason, session_id=session_id)

    if context.event_already_recorded:
        return refuse(NotificationReason.DUPLICATE_EVENT)
    if note.reported_status != "paid":
        return refuse(NotificationReason.NOT_A_PAYMENT)
    if session is None:
        return refuse(NotificationReason.UNKNOWN_TRANSACTION)
    if note.amount != session.amount:
        return refuse(NotificationReason.AMOUNT_MISMATCH)
    if session.paid_at_ms is not None:
        return refuse(NotificationReason.ALREADY_PAID)
    renewed = next((other for other in context.other_active
                    if other.session_id == session.renews
                    and other.status == SessionStatus.PAID), None)
    if any(other.status == SessionStatus.PAID and other is not renewed
           for other in context.other_active):
        return refuse(NotificationReason.DUPLICATE_PAYMENT)

    # The provider's clock says when the money moved; never before the QR existed, never
    # after we heard of it.
    paid_at_ms = note.received_at_ms if note.paid_at_ms is None else note.paid_at_ms
    paid_at_ms = min(max(paid_at_ms, session.created_at_ms), note.received_at_ms)
    late = session.status == SessionStatus.EXPIRED or paid_at_ms >= session.expires_at_ms
    superseded = tuple(
        replace(other, status=SessionStatus.EXPIRED) for other in context.other_active
        if other is not renewed
    )
    starts_at_ms = max(paid_at_ms, terms.opens_at_ms or paid_at_ms,
                       renewed.expires_at_ms if renewed is not None else paid_at_ms)
    paid = replace(
        session,
        status=SessionStatus.PAID,
        paid_at_ms=paid_at_ms,
        starts_at_ms=starts_at_ms,
        expires_at_ms=starts_at_ms + terms.access_ms,
        # A renewal whose window has ended before the money came is a plain purchase.
        renews=renewed.session_id if renewed is not None else None,
    )
    return PaymentDecision(
        applied=True,
        reason=NotificationReason.PAID_AFTER_WINDOW if late else NotificationReason.PAID,
        session_id=session.session_id,
        changed=(*superseded, paid),
    )


class RequestOutcome(StrEnum):
    REUSE = "reuse"  # a pending QR exists: show it again
    REFUSE = "refuse"  # paid access is held (and it is not time to renew)
    CREATE = "create"


@dataclass(frozen=True, slots=True)
class RequestDecision:
    outcome: RequestOutcome
    session: PaymentSession | None = None  # the one reused, or the one that refuses
    renews: str | None = None  # for CREATE: the paid session the new one continues


def decide_request(active: tuple[PaymentSession, ...], now_ms: int) -> RequestDecision:
    """Rules 1-2 for a QR request, given the viewer's active sessions for the stream.
    Pure; the store calls it again inside its transaction, so it holds under races."""
    live = [session for session in active if session.is_active(now_ms)]
    pending = [s for s in live if s.status_at(now_ms) == SessionStatus.PENDING]
    if pending:
        return RequestDecision(RequestOutcome.REUSE, pending[0])
    paid = sorted((s for s in live if s.status_at(now_ms) == SessionStatus.PAID),
                  key=lambda s: s.expires_at_ms)
    if not paid:
        return RequestDecision(RequestOutcome.CREATE)
    current = paid[0]
    if (len(paid) == 1 and not current.waiting_at(now_ms)
            and current.expires_at_ms - now_ms <= RENEWAL_WINDOW_MS):
        return RequestDecision(RequestOutcome.CREATE, renews=current.session_id)
    return RequestDecision(RequestOutcome.REFUSE, current)


def current_session(active: list[PaymentSession], now_ms: int) -> PaymentSession | None:
    """Of the viewer's active sessions for one stream, the one that matters now: the
    one granting access, else a pending QR, else a paid ticket waiting to open."""
    live = [session for session in active if session.is_active(now_ms)]
    for wanted in (
        lambda s: s.status_at(now_ms) == SessionStatus.PAID and not s.waiting_at(now_ms),
        lambda s: s.status_at(now_ms) == SessionStatus.PENDING,
        lambda s: s.waiting_at(now_ms),
    ):
        found = [session for session in live if wanted(session)]
        if found:
            return min(found, key=lambda s: (s.starts_at_ms or 0, s.created_at_ms))
    return None


@dataclass(frozen=True, slots=True)
class AccessDecision:
    has_access: bool
    stream_id: str
    session: PaymentSession | None
    remaining_ms: int
    # A paid session whose window has not opened: when it opens (ms from now).
    starts_in_ms: int | None = None
    # The paid next window that continues this one, if bought.
    next_session: PaymentSession | None = None


@dataclass(frozen=True, slots=True)
class SweepReport:
    expired: int
    pruned: int


def new_session_id() -> str:
    """128 random bits, URL-safe; never derived from anything else."""
    return secrets.token_urlsafe(16)


StatusListener = Callable[[PaymentSession], None]


class PaymentSessions:
    """The use cases: request a QR, learn of a payment, check access, sweep."""

    def __init__(
        self,
        store: SessionStore,
        provider: Provider,
        catalog: Catalog,
        clock: Clock,
        *,
        access_seconds: int,
        payment_window_seconds: int,
        unpaid_retention_seconds: int,
    ) -> None:
        self.store = store
        self.provider = provider
        self.catalog = catalog
        self.clock = clock
        self.access_ms = access_seconds * 1000
        self.payment_window_ms = payment_window_seconds * 1000
        self.unpaid_retention_ms = unpaid_retention_seconds * 1000
        self._listeners: list[StatusListener] = []

    def add_listener(self, listener: StatusListener) -> None:
        """Called with a session's new state on every status change: made by this
        process, or (with a shared store) by another instance."""
        self._listeners.append(listener)

    async def _changed(self, session: PaymentSession) -> None:
        self.notify_listeners(session)
        try:
            await self.store.publish_change(session)
        except Exception:  # stored already; other instances catch up when they resync
            log.exception("could not publish a session change to other instances")

    def notify_listeners(self, session: PaymentSession) -> None:
        """Tell this process's listeners of a status change, made here or by another
        instance sharing the store."""
        for listener in self._listeners:
            try:
                listener(session)
            except Exception:  # one broken listener must not stop payments
                log.exception("status listener failed")

    async def request_qr(
        self, user_id: str, stream_id: str, amount: int | None
    ) -> tuple[PaymentSession, bool]:
        """Rules 1-2. Returns the session and whether it was created by this call."""
        stream = self.catalog.get(stream_id)
        if stream is None:
            raise UnknownStream()
        if amount is not None and amount != stream.price:
            raise AmountMismatch(price=stream.price)
        now_ms = self.clock()
        decision = decide_request(
            tuple(await self.store.active_for_stream(user_id, stream_id, now_ms)), now_ms)
        if decision.outcome is RequestOutcome.REFUSE:
            raise AlreadyHasAccess()
        if decision.outcome is RequestOutcome.REUSE:
            assert decision.session is not None
            return decision.session, False

        session_id = new_session_id()
        expires_at_ms = now_ms + self.payment_window_ms
        created = await self.provider.create_qris(session_id, stream.price, expires_at_ms)
        found = qris.problems_for_transaction(created.qr_string, stream.price, created.trx_id)
        if found:
            log_event(log, "provider_qris_rejected", level=logging.ERROR,
                      provider=self.provider.name, trxId=created.trx_id, problems=found)
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
            renews=decision.renews,
        )
        stored, inserted = await self.store.insert_pending(candidate, now_ms)
        if not inserted:
            # A concurrent request by the same viewer won; its QR is the one to show.
            log_event(log, "qris_discarded_after_race", sessionId=session_id,
                      trxId=created.trx_id, streamId=stream_id)
            return self._reuse(stored, now_ms), False
        log_event(log, "session_created", sessionId=session_id, trxId=created.trx_id,
                  streamId=stream_id, amount=stream.price, status="pending",
                  renews=stored.renews)
        return stored, True

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
            session = await self.store.get(session_id)
        elif trx_id is not None:
            session = await self.store.get_by_trx(self.provider.name, trx_id)
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
        active = await self.store.active_for_stream(user_id, stream_id, now_ms)
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
        log_event(log, "access_decision", sessionId=session.session_id if session else None,
                  trxId=session.trx_id if session else None, streamId=stream_id,
                  granted=granted,
                  sessionStatus=session.status_at(now_ms) if session else None)
        return AccessDecision(granted, stream_id, session, remaining_ms,
                              starts_in_ms=session.starts_in_ms(now_ms)
                              if waiting and session is not None else None,
                              next_session=following)

    async def active_sessions(self, user_id: str) -> list[PaymentSession]:
        return await self.store.list_active(user_id, self.clock())

    async def record_notification(self, notification: Notification) -> PaymentDecision:
        """Rule 3: store every verified notification and apply it if it pays a session."""
        decision = await self.store.apply_notification(
            notification, lambda context: decide_payment(context, self._terms(context))
        )
        if decision.reason == NotificationReason.REPLAYED:
            log_event(log, "notification_replayed", level=logging.WARNING,
                      trxId=notification.trx_id, eventId=notification.event_id)
            raise NotificationRejected(reason="replayed")
        log_event(log, "notification_recorded", eventId=notification.event_id,
                  trxId=notification.trx_id, sessionId=decision.session_id,
                  applied=decision.applied, reason=decision.reason,
                  amount=notification.amount)
        for session in decision.changed:
            self._log_state(session, "payment_applied" if session.status == "paid"
                            else "session_superseded")
            await self._changed(session)
        return decision

    def _terms(self, context: PaymentContext) -> StreamTerms:
        stream = (self.catalog.get(context.session.stream_id)
                  if context.session is not None else None)
        if stream is None:  # unknown transaction, or a stream since removed
            return StreamTerms(self.access_ms)
        return StreamTerms(stream.access_seconds_or(self.access_ms // 1000) * 1000,
                           stream.starts_at_ms)

    @property
    def longest_access_ms(self) -> int:
        return max([self.access_ms, *(stream.access_seconds_or(self.access_ms // 1000) * 1000
                                      for stream in self.catalog)])

    async def purchases(self, user_id: str, limit: int = 100) -> list[PaymentSession]:
        """The viewer's paid sessions, newest payment first: what they bought."""
        return await self.store.list_paid(user_id, limit)

    async def revoke(self, session_id: str, reason: str) -> PaymentSession:
        """End a paid session now (a refund, an abuse report). Idempotent: revoking a
        session that is not paid and active changes nothing and returns it as it is."""
        ended = await self.store.end_paid_session(session_id, self.clock())
        if ended is None:
            session = await self.store.get(session_id)
            if session is None:
                raise SessionNotFound()
            return session
        log_event(log, "session_revoked", sessionId=ended.session_id, trxId=ended.trx_id,
                  streamId=ended.stream_id, reason=reason, paidAt=ended.paid_at_ms)
        await self._changed(ended)
        return ended

    async def ended_early(self) -> list[PaymentSession]:
        """Sessions whose access was ended before its natural expiry and whose access
        tokens could therefore still look valid."""
        return await self.store.ended_early(self.clock() - self.longest_access_ms)

    async def sweep(self, batch_size: int = 500) -> SweepReport:
        """Rule 5: mark expired sessions (telling listeners) and prune stale unpaid ones,
        in bounded batches so one sweep never holds the store for long."""
        now_ms = self.clock()
        expired = 0
        while True:
            batch = await self.store.expire_due(now_ms, batch_size)
            for session in batch:
                self._log_state(session, "session_expired")
                await self._changed(session)
            expired += len(batch)
            if len(batch) < batch_size:
                break
        pruned = 0
        while True:
            count = await self.store.prune_unpaid(now_ms - self.unpaid_retention_ms, batch_size)
            pruned += count
            if count < batch_size:
                break
        return SweepReport(expired=expired, pruned=pruned)

    def _log_state(self, session: PaymentSession, event: str) -> None:
        log_event(log, event, sessionId=session.session_id, trxId=session.trx_id,
                  streamId=session.stream_id, status=session.status,
                  paidAt=session.paid_at_ms, expiresAt=session.expires_at_ms)
