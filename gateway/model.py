"""The model: payment sessions, provider notifications, and the pure decisions about
them. No I/O, no clock of its own, no HTTP, no store, no provider: every function takes
the time as a parameter, so the rules are tested by passing a time, not by waiting.
The store interface and the provider interface import this module; the use cases
(`gateway/sessions.py`) import those interfaces.

The five session rules (the SPEC's "The payment session"; code that says "Rule N"
means these):

1. One active session per viewer and stream. "Active" is pending, or paid and not yet
   expired (a paid ticket whose window has not opened is active too). The store
   enforces it atomically, across requests, processes and instances. The one
   exception is rule 2's: a paid session's next window, bought in its last minutes.
2. Asking for a QR while a pending session exists returns that same session and QR, so
   a viewer never holds two payable QRs for one stream. Asking while a paid session is
   active is refused (409, `already_has_access`), except in the last ten minutes of
   its window (`RENEWAL_WINDOW_MS`): then a new session is made that `renews` it and,
   once paid, starts where it ends (`decide_new_session`). At most one such window
   waits behind the current one.
3. Only an authentic provider notification that names a known trxId and carries exactly
   the session's amount pays it; duplicates change nothing. A payment that arrives
   after the QR's window is still money received: the session becomes paid with the
   full access window from `paidAt`, unless the viewer already holds another paid
   session for the stream (then it is a refund due; the session it renews does not
   count). Every authentic notification is kept with its reason, applied or not
   (`decide_payment`). A paid session's window opens (`startsAt`) at the latest of:
   payment, the stream's `starts_at` (a ticket bought ahead), and the end of the window
   it renews, if that one is still paid; it lasts the stream's access window.
4. Access means: the session exists, belongs to the caller, is for this stream, is
   paid and unexpired, and its window has opened: `startsAt <= now < expiresAt`.
   `remainingTime = max(0, expiresAt - now)` in ms.
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
# Rule 2's exception: in the last ten minutes of a paid window the viewer may buy the
# next one, which starts where the current one ends.
RENEWAL_WINDOW_MS = 10 * 60 * 1000


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
    # Once paid: when access opens (payment, the stream's start, or the end of the
    # window this one renews). None while unpaid.
    starts_at_ms: int | None = None
    # The paid session whose window this one continues without a gap (rule 2), if any.
    renews: str | None = None
    # Once paid: the end of the window the payment bought (startsAt + the stream's
    # access window). An early end (revocation, refund) moves `expires_at_ms`, never
    # this: the access tokens already handed out carry it (`tokens_live_until_ms`).
    paid_until_ms: int | None = None
    # Why access ended before its time, when it did: ENDED_BY_REVOCATION, or a refund's
    # or a cancelled show's (refund_model). The viewer is told which, never asked to pay.
    ended_reason: str | None = None

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


def ended_early_ticket(purchases: list[PaymentSession], stream_id: str,
                       now_ms: int) -> PaymentSession | None:
    """The viewer's newest ticket for the stream, if it was ended early and the window
    it bought is not over yet (after that, access would have ended anyway)."""
    newest = next((ticket for ticket in purchases if ticket.stream_id == stream_id), None)
    if newest is None or newest.ended_reason is None:
        return None
    bought_until_ms = tokens_live_until_ms(newest)
    return newest if bought_until_ms is not None and now_ms < bought_until_ms else None


def tokens_live_until_ms(session: PaymentSession) -> int | None:
    """The one rule for how long a session's access tokens live: until the end of the
    window its payment bought, whatever has ended the session since. The token's signer
    writes it into every token; the gate keeps an ended session refused until then (and
    forgets it after, when its tokens have expired on their own); every instance reloads
    the sessions it still holds for at start-up. None: never paid, so no tokens.

    Sessions stored before this was kept carry only `expires_at_ms`."""
    if session.paid_at_ms is None:
        return None
    return session.paid_until_ms if session.paid_until_ms is not None else session.expires_at_ms


@dataclass(frozen=True, slots=True)
class Notification:
    """What a provider told us, after its signature was verified, in neutral terms."""

    provider: str
    event_id: str
    trx_id: str
    amount: int
    reported_status: str  # REPORTED_PAID, or the provider's own word for anything else
    paid_at_ms: int | None
    received_at_ms: int
    raw_body: str
    # Identifies this exact signed delivery, so a captured request cannot be replayed.
    replay_key: str | None = None
    # What the payer paid above `amount` (Midtrans fee imposition, Tripay customer fee):
    # `amount` is the price part, compared with the session's; the difference is kept.
    fee: int = 0


# `Notification.reported_status` of a payment, in neutral terms (any other value is the
# provider's own word for what happened), and of an authentic notification we could
# not read.
REPORTED_PAID = "paid"
UNREADABLE_STATUS = "unreadable"
# ... of an authentic "paid" (or "refunded") notification that the provider's status API
# could not be asked to confirm when it came: the provider signs too little of it to be
# believed alone, so it waits for reconciliation.
UNCONFIRMED_STATUS = "unconfirmed"
# ... of a refund's outcome, as the provider reports it (a Midtrans refund notification,
# a Xendit qr.refund callback, a Tripay REFUND): never a payment.
REPORTED_REFUND_SUCCEEDED = "refund_succeeded"
REPORTED_REFUND_FAILED = "refund_failed"
REPORTED_REFUND_PENDING = "refund_pending"


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
    # Authentic (signed or token-checked) but not readable as a payment event: kept for
    # a person, since it may be money we could not parse.
    NOT_UNDERSTOOD = "not_understood"
    REPLAYED = "replayed"
    # Authentic, but its payment could not be confirmed with the provider's status API
    # at the time: changes nothing; reconciliation asks again and pays the session.
    # Not money to refund, so no person is needed.
    UNCONFIRMED = "unconfirmed"
    # A refund's outcome, for the refund service: it moves no session.
    REFUND_REPORTED = "refund_reported"


# What a notification that is not a payment is kept as (NOT_A_PAYMENT otherwise).
_REASON_BY_REPORTED_STATUS = {
    UNREADABLE_STATUS: NotificationReason.NOT_UNDERSTOOD,
    UNCONFIRMED_STATUS: NotificationReason.UNCONFIRMED,
    REPORTED_REFUND_SUCCEEDED: NotificationReason.REFUND_REPORTED,
    REPORTED_REFUND_FAILED: NotificationReason.REFUND_REPORTED,
    REPORTED_REFUND_PENDING: NotificationReason.REFUND_REPORTED,
}


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
    """Rules 1-2: `active_as_stored` are the viewer's sessions for the stream whose
    stored status is active (some may be past expiry). A pending one is shown again; a
    paid one refuses, unless it is alone and in its last ten minutes: then `candidate`
    is stored as its renewal. Not inserted, `session` is the one reused or refusing
    (the caller tells them apart by status). Pure: no I/O, no clock."""
    current, expired = expire_stale(active_as_stored, now_ms)
    live = [session for session in current if session.status in ACTIVE_STATUSES]
    pending = [session for session in live if session.status == SessionStatus.PENDING]
    if pending:
        return NewSessionDecision(pending[0], False, expired)
    paid = sorted(live, key=lambda session: session.expires_at_ms)
    if not paid:
        return NewSessionDecision(replace(candidate, renews=None), True, expired)
    renewed = paid[0]
    if (len(paid) == 1 and not renewed.waiting_at(now_ms)
            and renewed.expires_at_ms - now_ms <= RENEWAL_WINDOW_MS):
        return NewSessionDecision(replace(candidate, renews=renewed.session_id), True,
                                  expired)
    return NewSessionDecision(renewed, False, expired)


def current_session(active: Iterable[PaymentSession], now_ms: int) -> PaymentSession | None:
    """Of the viewer's active sessions for one stream, the one that matters now: the
    one granting access, else a pending QR, else a paid ticket waiting to open."""
    live = [session for session in active if session.is_active(now_ms)]
    granting = [s for s in live if s.status_at(now_ms) == SessionStatus.PAID
                and not s.waiting_at(now_ms)]
    pending = [s for s in live if s.status_at(now_ms) == SessionStatus.PENDING]
    waiting = [s for s in live if s.waiting_at(now_ms)]
    for found in (granting, pending, waiting):
        if found:
            return min(found, key=lambda s: (s.starts_at_ms or 0, s.created_at_ms))
    return None


ENDED_BY_REVOCATION = "revoked"


def decide_revocation(session: PaymentSession, now_ms: int,
                      reason: str = ENDED_BY_REVOCATION) -> PaymentSession | None:
    """An operator ends a session now (refund, abuse): only a paid, unexpired one; its
    new state is expired, expiring now (`paid_until_ms` stays: its tokens still carry
    it). None when there is nothing to end."""
    if session.status_at(now_ms) != SessionStatus.PAID:
        return None
    return replace(session, status=SessionStatus.EXPIRED, expires_at_ms=now_ms,
                   ended_reason=reason)


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


@dataclass(frozen=True, slots=True)
class StreamTerms:
    """What a payment buys for one stream: its access window, and when it opens at the
    earliest (the stream's starts_at, for tickets bought ahead)."""

    access_ms: int
    opens_at_ms: int | None = None


def decide_payment(context: PaymentContext, terms: StreamTerms) -> PaymentDecision:
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
    if note.reported_status != REPORTED_PAID:
        return refuse(_REASON_BY_REPORTED_STATUS.get(note.reported_status,
                                                     NotificationReason.NOT_A_PAYMENT))
    if session is None:
        return refuse(NotificationReason.UNKNOWN_TRANSACTION)
    if note.amount != session.amount:
        return refuse(NotificationReason.AMOUNT_MISMATCH)
    if session.paid_at_ms is not None:
        return refuse(NotificationReason.ALREADY_PAID)
    # A renewal whose window is still paid continues it; one whose window has ended
    # before the money came is a plain purchase.
    renewed = next((other for other in others if other.session_id == session.renews
                    and other.status == SessionStatus.PAID), None)
    if any(other.status == SessionStatus.PAID and other is not renewed for other in others):
        return refuse(NotificationReason.DUPLICATE_PAYMENT)

    # The provider's clock says when the money moved; never before the QR existed, never
    # after we heard of it.
    paid_at_ms = note.received_at_ms if note.paid_at_ms is None else note.paid_at_ms
    paid_at_ms = min(max(paid_at_ms, session.created_at_ms), note.received_at_ms)
    late = session.status == SessionStatus.EXPIRED or paid_at_ms >= session.expires_at_ms
    reason = NotificationReason.PAID_AFTER_WINDOW if late else NotificationReason.PAID
    starts_at_ms = max(paid_at_ms, terms.opens_at_ms or paid_at_ms,
                       renewed.expires_at_ms if renewed is not None else paid_at_ms)
    if starts_at_ms + terms.access_ms <= note.received_at_ms:
        # Providers retry for up to a day: the access this payment bought would be over
        # before we heard of it. The viewer paid for a window, so it starts now.
        paid_at_ms = starts_at_ms = note.received_at_ms
        reason = NotificationReason.PAID_WINDOW_FROM_RECEIPT
    superseded = tuple(replace(other, status=SessionStatus.EXPIRED) for other in others
                       if other is not renewed)
    paid = replace(
        session,
        status=SessionStatus.PAID,
        paid_at_ms=paid_at_ms,
        starts_at_ms=starts_at_ms,
        expires_at_ms=starts_at_ms + terms.access_ms,
        renews=renewed.session_id if renewed is not None else None,
        paid_until_ms=starts_at_ms + terms.access_ms,
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
    # A paid session whose window has not opened: how long until it does (ms).
    starts_in_ms: int | None = None
    # The paid next window that continues this one, if bought.
    next_session: PaymentSession | None = None
    # No access because the viewer's ticket was ended early (revoked, refunded, show
    # cancelled) inside the window it bought: the page says what happened instead of
    # asking for money again.
    ended: PaymentSession | None = None


@dataclass(frozen=True, slots=True)
class SweepReport:
    expired: int
    pruned: int


def new_session_id() -> str:
    """128 random bits, URL-safe; never derived from anything else."""
    return secrets.token_urlsafe(16)


StatusListener = Callable[[PaymentSession], None]
