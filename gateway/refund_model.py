"""Money going back: refunds and cancelled shows, as pure rules (no I/O, no clock of
its own, no HTTP, no store, no provider). The use cases are in `gateway/refunds.py`.

The rules (SPEC, "Refunds and cancelled shows"):
1. A refund is of one transaction whose money we received: a ticket, or money we could
   not turn into one (a duplicate payment, a wrong amount, an unknown transaction).
   What it can give back is what the payer paid, the price and any fee on top
   (`received_rupiah`, from the ledger).
2. Never more than was paid: every refund that has not failed counts against it. A
   request for more than remains is refused; one that names no amount is for all that
   remains (`decide_refund`).
3. Never twice: a refund's idempotency key is fixed when it is first asked for, from
   the payment and the refund's number (`refund_key`), and every retry (a timeout, a
   restart, `kill -9` between asking the provider and recording its answer) sends the
   same one; the provider pays out at most once per key. The store creates a payment's
   refunds one at a time, so two requests can never both take what remains.
4. A refund ends the ticket's access at once, exactly like a revocation.
5. Where it stands: `requested` (asked; the answer, or the provider's notification, is
   to come), then `succeeded` or `failed`; or `manual` where the provider has no refund
   API: a person refunds by hand and closes it (then `succeeded`, `by_hand`). A refund
   whose answer never came stays `requested` and is asked again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from gateway.errors import NothingToRefund, RefundTooLarge
from gateway.ledger import LedgerEntry
from gateway.model import NotificationReason


class RefundStatus(StrEnum):
    REQUESTED = "requested"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    MANUAL = "manual"


# Money received, by the reason its notification was recorded with: a ticket, or money
# that did not become one and is a person's to give back.
MONEY_REASONS = frozenset({
    NotificationReason.PAID.value,
    NotificationReason.PAID_AFTER_WINDOW.value,
    NotificationReason.PAID_WINDOW_FROM_RECEIPT.value,
    NotificationReason.DUPLICATE_PAYMENT.value,
    NotificationReason.AMOUNT_MISMATCH.value,
    NotificationReason.UNKNOWN_TRANSACTION.value,
})
# What a session's access ended by, when it ended early (PaymentSession.ended_reason).
ENDED_BY_REFUND = "refunded"
ENDED_BY_CANCELLATION = "cancelled"
# How long a refund without an answer waits before it is asked again (the default of
# GATEWAY_REFUND_RETRY_SECONDS); one written but not asked yet (a cancelled show's, or
# one whose process died first), before it is, at most.
RETRY_AFTER_MS = 60_000
FIRST_ASK_AFTER_MS = 5_000


@dataclass(frozen=True, slots=True)
class Refund:
    refund_id: str  # the idempotency key (see `refund_key`): one id, everywhere
    trx_id: str
    provider: str
    number: int  # the payment's refunds, 1, 2, ...
    amount: int  # whole rupiah
    reason: str
    status: RefundStatus
    requested_at_ms: int
    updated_at_ms: int
    requested_by: str  # "api", an operator's name, or "cancellation"
    session_id: str | None = None  # the ticket, when it is one
    stream_id: str | None = None
    provider_refund_id: str | None = None
    failure_code: str | None = None
    # A person's note: how a manual refund was made, or why a failed one was left.
    note: str = ""
    attempts: int = 0  # times the provider was asked
    by_hand: bool = False

    @property
    def counts_against_payment(self) -> bool:
        return self.status != RefundStatus.FAILED

    @property
    def needs_person(self) -> bool:
        """Money still to go back that no provider will move on its own."""
        return self.status in (RefundStatus.MANUAL, RefundStatus.FAILED)

    def due(self, now_ms: int, retry_after_ms: int = RETRY_AFTER_MS) -> bool:
        """Never answered, and waited for long enough: ask (again, with the same key).
        One not asked yet is due after a moment (its request may be asking right now)."""
        waited_ms = now_ms - self.updated_at_ms
        wait_ms = (min(FIRST_ASK_AFTER_MS, retry_after_ms) if self.attempts == 0
                   else retry_after_ms)
        return (self.status == RefundStatus.REQUESTED and self.provider_refund_id is None
                and waited_ms >= wait_ms)


def refund_key(trx_id: str, number: int) -> str:
    """The payment's `number`th refund's idempotency key: the same however many times
    it is asked for, in the alphabet every provider's key takes ([A-Za-z0-9_-])."""
    digest = hashlib.sha256(trx_id.encode()).hexdigest()[:24]
    return f"rf{number}-{digest}"


def received_rupiah(entries: Iterable[LedgerEntry]) -> int:
    """What the payer paid for a transaction, as the ledger recorded it: the first
    notification that brought money (its price part and the fee above it). Later
    deliveries of the same payment are duplicates and bring none."""
    money = [entry for entry in entries if entry.reason in MONEY_REASONS]
    if not money:
        return 0
    first = min(money, key=lambda entry: (entry.notification.received_at_ms, entry.entry_id))
    return first.notification.amount + first.notification.fee


@dataclass(frozen=True, slots=True)
class RefundAsked:
    """One request for money back, before the store has seen the payment's refunds."""

    trx_id: str
    provider: str
    received_rupiah: int
    amount: int | None  # None: all that remains
    reason: str
    requested_by: str
    session_id: str | None
    stream_id: str | None
    by_api: bool  # the provider refunds by API; else it is a person's task from the start


def decide_refund(asked: RefundAsked, existing: Sequence[Refund], now_ms: int) -> Refund:
    """Rules 1-3, over the payment's refunds as the store holds them (read in the same
    transaction that writes the new one). Raises NothingToRefund or RefundTooLarge."""
    taken = sum(refund.amount for refund in existing if refund.counts_against_payment)
    remaining = asked.received_rupiah - taken
    if remaining <= 0:
        raise NothingToRefund(paid=asked.received_rupiah, refunded=taken)
    amount = remaining if asked.amount is None else asked.amount
    if amount > remaining:
        raise RefundTooLarge(remaining=remaining)
    number = 1 + max((refund.number for refund in existing), default=0)
    return Refund(
        refund_id=refund_key(asked.trx_id, number), trx_id=asked.trx_id,
        provider=asked.provider, number=number, amount=amount, reason=asked.reason,
        status=RefundStatus.REQUESTED if asked.by_api else RefundStatus.MANUAL,
        requested_at_ms=now_ms, updated_at_ms=now_ms, requested_by=asked.requested_by,
        session_id=asked.session_id, stream_id=asked.stream_id)


def after_answer(refund: Refund, status: str, now_ms: int, *,
                 provider_refund_id: str | None = None,
                 failure_code: str | None = None, asked: bool = False) -> Refund:
    """The refund once the provider answered (or reported) `status`, one of the
    provider's words: requested, succeeded, failed, manual, or unknown (no answer: it
    stays requested, to be asked again). An ended refund stays as it ended: a late or
    repeated answer changes nothing."""
    if refund.status in (RefundStatus.SUCCEEDED, RefundStatus.FAILED) or (
            refund.status == RefundStatus.MANUAL and status != "manual"):
        return refund
    attempts = refund.attempts + (1 if asked else 0)
    new_status = {"succeeded": RefundStatus.SUCCEEDED, "failed": RefundStatus.FAILED,
                  "manual": RefundStatus.MANUAL}.get(status, RefundStatus.REQUESTED)
    return replace(refund, status=new_status, updated_at_ms=now_ms, attempts=attempts,
                   provider_refund_id=provider_refund_id or refund.provider_refund_id,
                   failure_code=failure_code if new_status == RefundStatus.FAILED
                   else refund.failure_code)


def closed_by_hand(refund: Refund, operator: str, note: str, now_ms: int) -> Refund | None:
    """A person refunded a manual (or failed) refund themselves: succeeded, by hand.
    None when there is nothing of theirs to close."""
    if not refund.needs_person:
        return None
    return replace(refund, status=RefundStatus.SUCCEEDED, by_hand=True, updated_at_ms=now_ms,
                   note=f"{operator}: {note}")


@dataclass(frozen=True, slots=True)
class Cancellation:
    """A show called off: nothing more is sold for it, and its tickets are refunded."""

    stream_id: str
    reason: str
    cancelled_at_ms: int
    cancelled_by: str
