"""The model: payment sessions, provider notifications, and the pure decisions about
them. No I/O, no clock of its own, no HTTP, no store, no provider: every function takes
the time as a parameter, so the rules are tested by passing a time, not by waiting.
The store interface and the provider interface import this module; the use cases
(`gateway/sessions.py`) import those interfaces.

The five session rules (the SPEC's "The payment session"; code that says "Rule N"
means these):

1. One active session per viewer and stream. "Active" is pending, or paid and not yet
   expired. The store enforces it atomically, across requests, processes and instances.
2. Asking for a QR while a pending session exists returns that same session and QR, so
   a viewer never holds two payable QRs for one stream. Asking while a paid session is
   active is refused (409, `already_has_access`).
3. Only an authentic provider notification that names a known trxId and carries exactly
   the session's amount pays it; duplicates change nothing. A payment that arrives
   after the QR's window is still money received: the session becomes paid with the
   full access window from `paidAt`, unless the viewer already holds another paid
   session for the stream (then it is a refund due). Every authentic notification is
   kept with its reason, applied or not (`decide_payment`).
4. Access means: the session exists, belongs to the caller, is for this stream, and is
   paid and unexpired. `remainingTime = max(0, expiresAt - now)` in ms.
5. Expiry is exact on every read (`status_at`), whatever the sweeper has done: an
   active session past its `expiresAt` is expired. The sweeper marks such sessions
   expired (telling listeners, so viewers' pages turn) and prunes unpaid expired ones
   after a retention period; paid sessions are the sales ledger and are never pruned.

"An active session past its expiry is expired" is decided here and only here
(`status_at`, `is_stale`, `expire_stale`); the stores hand this module the rows as
stored and write back what it returns.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum


class SessionStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    EXPIRED = "expired"


ACTIVE_STATUSES = (SessionStatus.PENDING, SessionStatus.PAID)


def status_at(status: SessionStatus, expires_at_ms: int, now_ms: int) -> SessionStatus:
    """Rule 5, the one place it is decided: an active session past its expiry is
    expired, on every read, whatever the sweeper has got round to."""
    if status in ACTIVE_STATUSES and now_ms >= expires_at_ms:
        return SessionStatus.EXPIRED
    return status


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

    def status_at(self, now_ms: int) -> SessionStatus:
        return status_at(self.status, self.expires_at_ms, now_ms)

    def is_stale(self, now_ms: int) -> bool:
        """Stored as active, but over: to be written back as expired."""
        return self.status != self.status_at(now_ms)

    def remaining_ms(self, now_ms: int) -> int:
        return max(0, self.expires_at_ms - now_ms)

    def is_active(self, now_ms: int) -> bool:
        return self.status_at(now_ms) in ACTIVE_STATUSES

    def grants_access(self, user_id: str, stream_id: str, now_ms: int) -> bool:
        return (
            self.user_id == user_id
            and self.stream_id == stream_id
            and self.status_at(now_ms) == SessionStatus.PAID
        )


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
    # What the payer paid above `amount` (Midtrans fee imposition, Tripay customer fee):
    # `amount` is the price part, compared with the session's; the difference is kept.
    fee: int = 0


class NotificationReason(StrEnum):
    PAID = "paid"
    PAID_AFTER_WINDOW = "paid_after_payment_window"
    # Heard of after the access it bought would already have run out: granted from
    # our receipt instead (paidAt is then our receipt; the ledger keeps the provider's).
    PAID_WINDOW_FROM_RECEIPT = "paid_window_from_receipt"
    DUPLICATE_EVENT = "duplicate_event"
    ALREADY_PAID = "already_paid"
    AMOUNT_MISMATCH = "amount_mismatch"
    UNKNOWN_TRANSACTION = "unknown_transaction"
    DUPLICATE_PAYMENT = "duplicate_payment_refund_due"
    NOT_A_PAYMENT = "not_a_payment"
    REPLAYED = "replayed"


def expire_stale(sessions: Iterable[PaymentSession], now_ms: int
                 ) -> tuple[list[PaymentSession], tuple[PaymentSession, ...]]:
    """`sessions` as they are at `now_ms` (stale ones marked expired), and the ones so
    marked, which the store writes back."""
    current: list[PaymentSession] = []
    expired: list[PaymentSession] = []
    for session in sessions:
        if session.is_stale(now_ms):
            session = replace(session, status=SessionStatus.EXPIRED)
            expired.append(session)
        current.append(session)
    return current, tuple(expired)


@dataclass(frozen=True, slots=True)
class NewSessionDecision:
    """What a QR request does to the viewer's sessions for the stream (rules 1-2)."""

    session: PaymentSession  # the viewer's active session: the one found, or the new one
    inserted: bool
    # Stale sessions found, marked expired: written before the new one is inserted.
    expired: tuple[PaymentSession, ...] = ()


def decide_new_session(candidate: PaymentSession, active_as_stored: Iterable[PaymentSession],
                       now_ms: int) -> NewSessionDecision:
    """Rule 1: `active_as_stored` are the viewer's sessions for the stream whose stored
    status is active (some may be past expiry). Pure: no I/O, no clock."""
    current, expired = expire_stale(active_as_stored, now_ms)
    for session in current:
        if session.status in ACTIVE_STATUSES:
            return NewSessionDecision(session, False, expired)
    return NewSessionDecision(candidate, True, expired)


def decide_revocation(session: PaymentSession, now_ms: int) -> PaymentSession | None:
    """An operator ends a session now (refund, abuse): only a paid, unexpired one; its
    new state is expired, expiring now. None when there is nothing to end."""
    if session.status_at(now_ms) != SessionStatus.PAID:
        return None
    return replace(session, status=SessionStatus.EXPIRED, expires_at_ms=now_ms)


@dataclass(frozen=True, slots=True)
class PaymentContext:
    """What the store read inside its transaction for one notification, as stored."""

    notification: Notification
    session: PaymentSession | None
    event_already_recorded: bool
    # The viewer's other sessions for the same stream whose stored status is active
    # (some may be past expiry: this module decides that).
    others_as_stored: tuple[PaymentSession, ...]


@dataclass(frozen=True, slots=True)
class PaymentDecision:
    applied: bool
    reason: NotificationReason
    session_id: str | None
    # New states to write, in order (superseded sessions before the one being paid, so
    # that "one active session per viewer and stream" holds after every statement).
    # Listeners hear of these.
    changed: tuple[PaymentSession, ...] = ()
    # Stale sessions the store read, marked expired: written before `changed`. Found
    # inside the transaction, not announced (the status hub's timer and every read
    # already see them as expired).
    expired: tuple[PaymentSession, ...] = ()

    @property
    def writes(self) -> tuple[PaymentSession, ...]:
        """Everything the store writes, in order."""
        return (*self.expired, *self.changed)


def decide_payment(context: PaymentContext, access_ms: int) -> PaymentDecision:
    """Rule 3: what a verified notification does. Pure: no I/O, no clock (the time is
    the notification's receipt)."""
    note, session = context.notification, context.session
    session_id = session.session_id if session else None
    others: list[PaymentSession] = []
    expired: tuple[PaymentSession, ...] = ()
    if session is not None:
        (session, *others), expired = expire_stale(
            (session, *context.others_as_stored), note.received_at_ms)
        others = [other for other in others if other.status in ACTIVE_STATUSES]

    def refuse(reason: NotificationReason) -> PaymentDecision:
        return PaymentDecision(applied=False, reason=reason, session_id=session_id,
                               expired=expired)

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
    if any(other.status == SessionStatus.PAID for other in others):
        return refuse(NotificationReason.DUPLICATE_PAYMENT)

    # The provider's clock says when the money moved; never before the QR existed, never
    # after we heard of it.
    paid_at_ms = note.received_at_ms if note.paid_at_ms is None else note.paid_at_ms
    paid_at_ms = min(max(paid_at_ms, session.created_at_ms), note.received_at_ms)
    late = session.status == SessionStatus.EXPIRED or paid_at_ms >= session.expires_at_ms
    reason = NotificationReason.PAID_AFTER_WINDOW if late else NotificationReason.PAID
    if paid_at_ms + access_ms <= note.received_at_ms:
        # Providers retry for up to a day: the access this payment bought would be over
        # before we heard of it. The viewer paid for a window, so it starts now.
        paid_at_ms = note.received_at_ms
        reason = NotificationReason.PAID_WINDOW_FROM_RECEIPT
    superseded = tuple(replace(other, status=SessionStatus.EXPIRED) for other in others)
    paid = replace(
        session,
        status=SessionStatus.PAID,
        paid_at_ms=paid_at_ms,
        expires_at_ms=paid_at_ms + access_ms,
    )
    return PaymentDecision(
        applied=True,
        reason=reason,
        session_id=session.session_id,
        changed=(*superseded, paid),
        expired=expired,
    )


@dataclass(frozen=True, slots=True)
class AccessDecision:
    has_access: bool
    stream_id: str
    session: PaymentSession | None
    remaining_ms: int


@dataclass(frozen=True, slots=True)
class SweepReport:
    expired: int
    pruned: int


def new_session_id() -> str:
    """128 random bits, URL-safe; never derived from anything else."""
    return secrets.token_urlsafe(16)


StatusListener = Callable[[PaymentSession], None]
