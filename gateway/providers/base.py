"""The payment-provider interface. One module per provider implements it.

A provider creates a one-time dynamic QRIS, authenticates its own notifications, and
answers status questions. The optional parts have defaults here, so an adapter only
overrides what its API really offers: `cancel` (Midtrans can; most cannot),
`authenticate` (a provider that signs too little of a notification confirms it with its
status API before it can pay anything) and `refund` with `refund_reports` (money back
through the provider's API; without one a refund is a person's task).
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar
from urllib.parse import quote

import aiohttp

from gateway.errors import InvalidRequest
from gateway.ids import TRX_ID
from gateway.logs import log_event
from gateway.model import REPORTED_PAID, UNCONFIRMED_STATUS, UNREADABLE_STATUS, Notification

log = logging.getLogger("gateway.providers")


def path_id(trx_id: str) -> str:
    """A transaction id as it goes into a provider's URL path: one of the ids'
    grammar (no slash, never only dots, so no path segment to climb out with), and
    percent-encoded all the same. Anything else is refused before the provider is
    asked, with our credentials, about nonsense."""
    if not TRX_ID.fullmatch(trx_id):
        raise InvalidRequest(detail="not a transaction id")
    return quote(trx_id, safe="")


class UnreadableNotification(Exception):
    """Raised by `verify_notification` once a notification is known to be authentic (its
    signature or token checked out) but cannot be read as a payment event: another
    event type, a field missing or out of shape. The provider is answered 200 and the
    notification kept for a person (`not_understood`), never refused: a refusal makes
    the provider retry for hours, and the SPEC keeps everything a provider tells us."""

    def __init__(self, detail: str, trx_id: str = "") -> None:
        super().__init__(detail)
        self.trx_id = trx_id  # when it could be read safely, for the ledger's filters


def kept_unread(provider: str, problem: UnreadableNotification, raw_body: bytes,
                received_at_ms: int) -> Notification:
    """The ledger's record of an authentic notification we could not read. Its event id
    is the body's digest, so the provider's retries of it are duplicates."""
    return Notification(
        provider=provider,
        event_id="unreadable:" + hashlib.sha256(raw_body).hexdigest()[:48],
        trx_id=problem.trx_id,
        amount=0,
        reported_status=UNREADABLE_STATUS,
        paid_at_ms=None,
        received_at_ms=received_at_ms,
        raw_body=raw_body.decode("utf-8", "replace"),
    )


@dataclass(frozen=True, slots=True)
class CreatedQris:
    trx_id: str  # the provider's transaction id (or our reference, where it is the id)
    qr_string: str
    fee: int  # what the provider adds on top of the price, whole rupiah
    # The id the payload's tag 62 must carry, for a provider that promises one (the
    # simulator). Real acquirers write labels of their own there (Xendit a random one),
    # so for them the check is TLV, CRC, point of initiation 12 and the exact amount.
    qr_reference: str | None = None


class TransactionState(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class TransactionStatus:
    trx_id: str
    state: TransactionState
    amount: int | None  # the price it was paid for (fees the payer added taken off)
    paid_at_ms: int | None
    fee: int = 0  # what the payer paid above `amount` (fee imposition, customer fees)
    raw_body: str = ""  # the provider's answer, kept in the ledger when it pays
    # The provider's id of the payment, where it has one apart from the transaction
    # (Xendit's `qrpy_...`, which its refund API takes).
    payment_id: str | None = None


class RefundStatus(StrEnum):
    """Where a refund stands, as a provider's refund call (or its report) says."""

    REQUESTED = "requested"  # accepted; the outcome comes later, by notification
    SUCCEEDED = "succeeded"  # the money went back
    FAILED = "failed"  # refused or denied; `failure_code` says why; no money moved
    MANUAL = "manual"  # no refund API: a person refunds by hand and closes it
    # No answer (timeout, 5xx, unreachable): it may or may not have happened. Ask again
    # later with the SAME idempotency key, which can never pay out twice.
    UNKNOWN = "unknown"


# An idempotency key goes into Midtrans' refund_key ([A-Za-z0-9_-]) and Xendit's
# Idempotency-key header: the alphabet both take.
REFUND_KEY = re.compile(r"[A-Za-z0-9_-]{8,64}")
# Midtrans takes a reason of at most 255 characters (and shows it to GoPay payers).
MAX_REFUND_REASON_CHARS = 255


@dataclass(frozen=True, slots=True)
class RefundRequest:
    trx_id: str
    amount_rupiah: int
    reason: str
    # Fixed when the refund is first asked for (payment and refund number), and sent
    # again unchanged on every retry: the provider pays out at most once per key.
    idempotency_key: str
    # The provider's id of the payment, where its refund API wants that rather than the
    # transaction (Xendit: the `qrpy_...` id, the event id of its qr.payment callback).
    # None: the adapter looks it up (Xendit: the QR's payments list, one per dynamic QR).
    payment_id: str | None = None

    def __post_init__(self) -> None:
        if not TRX_ID.fullmatch(self.trx_id):
            raise ValueError("refund of something that is not a transaction id")
        if not 0 < self.amount_rupiah <= 10**12:
            raise ValueError("a refund is a positive number of rupiah")
        if not REFUND_KEY.fullmatch(self.idempotency_key):
            raise ValueError("idempotency_key must be 8-64 of A-Z a-z 0-9 _ -")
        if self.payment_id is not None and not TRX_ID.fullmatch(self.payment_id):
            raise ValueError("payment_id is not a provider id")


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    status: RefundStatus
    # Midtrans' refund_chargeback_id, Xendit's `qrrf_...`, the simulator's own; None
    # when the provider gave none (a failure, MANUAL, UNKNOWN).
    provider_refund_id: str | None = None
    raw_body: str = ""  # the provider's answer, to keep with the refund
    # The provider's reason for FAILED: Midtrans' body status_code ("412", "414",
    # "202" for a bank's denial), Xendit's error_code ("REFUND_NOT_SUPPORTED", ...).
    failure_code: str | None = None


@dataclass(frozen=True, slots=True)
class RefundReport:
    """One refund, as a recorded refund notification tells it (`refund_reports`)."""

    trx_id: str  # "" where the report names only the payment (Xendit's qr.refund)
    status: RefundStatus  # SUCCEEDED, FAILED or REQUESTED (still pending)
    provider_refund_id: str | None  # as in RefundOutcome: match Xendit's by it
    idempotency_key: str | None  # ours, echoed back (Midtrans' refund_key): match by it
    payment_id: str | None  # Xendit's `qrpy_...`
    amount_rupiah: int | None
    failure_code: str | None = None


class Provider(abc.ABC):
    name: str
    # The URL the provider should notify, for APIs that take one per transaction;
    # None when the operator pastes it into the provider's dashboard instead.
    callback_url: str | None = None
    # Whether `refund` gives money back through the provider's API; if not, it answers
    # MANUAL and a person refunds by hand.
    refunds_by_api: ClassVar[bool] = False
    # Fields the answer to its notifications needs beside `success` and `data` for the
    # provider to stop retrying (otomatis.vip reads `"status": true`).
    callback_answer_fields: ClassVar[Mapping[str, bool]] = MappingProxyType({})
    _http: aiohttp.ClientSession | None = None

    async def open(self, http: aiohttp.ClientSession) -> None:
        """Called at start-up with the process's pooled HTTP client."""
        self._http = http

    async def close(self) -> None:  # noqa: B027 - most adapters hold nothing of their own
        """Called at shutdown."""

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError(f"provider {self.name} used before open()")
        return self._http

    @abc.abstractmethod
    async def create_qris(
        self, reference: str, amount_rupiah: int, expires_at_ms: int
    ) -> CreatedQris:
        """Create a one-time dynamic QRIS. Raises ProviderUnavailable (or ProviderTimeout,
        ProviderBadResponse) when it cannot."""

    @abc.abstractmethod
    def verify_notification(
        self, headers: Mapping[str, str], raw_body: bytes, received_at_ms: int
    ) -> Notification:
        """Authenticate and parse a callback from its raw bytes (never a re-serialised
        body). Raises NotificationRejected when it is not authentic,
        UnreadableNotification when it is authentic but not understood."""

    async def authenticate(
        self, headers: Mapping[str, str], raw_body: bytes, received_at_ms: int
    ) -> Notification:
        """What the callback endpoint calls. Providers that sign their notifications
        verify them; a provider that signs nothing overrides this to ask its status API
        (the notification is only a hint). An authentic one we cannot read is still
        returned, to be kept (`kept_unread`)."""
        try:
            return self.verify_notification(headers, raw_body, received_at_ms)
        except UnreadableNotification as problem:
            # Why it could not be read: the ledger keeps only the raw body.
            log_event(log, "notification_unreadable", level=logging.WARNING,
                      provider=self.name, trxId=problem.trx_id, detail=str(problem)[:200])
            return kept_unread(self.name, problem, raw_body, received_at_ms)

    async def transaction_status(self, trx_id: str) -> TransactionStatus:
        """Ask the provider, server to server, what happened to a transaction. An id
        outside the ids' grammar is no transaction of anyone's: the provider is not
        asked about it, with our credentials, at a URL it could bend."""
        if not TRX_ID.fullmatch(trx_id):
            return TransactionStatus(trx_id, TransactionState.UNKNOWN, None, None)
        return await self._transaction_status(trx_id)

    @abc.abstractmethod
    async def _transaction_status(self, trx_id: str) -> TransactionStatus:
        """`transaction_status`, for an id of the grammar: the adapter's own call."""

    async def cancel(self, trx_id: str) -> bool:
        """End a still-unpaid transaction at the provider when our payment window closes.
        True when the provider's API did it; the default is that it cannot (the expiry
        given at creation ends it on the provider's side)."""
        return False

    async def refund(self, request: RefundRequest) -> RefundOutcome:
        """Give `amount_rupiah` of a paid transaction back to the payer. Never raises for
        what the provider does: a refusal is FAILED, no answer is UNKNOWN (retry later
        with the same request), a provider without a refund API answers MANUAL."""
        return RefundOutcome(RefundStatus.MANUAL)

    def refund_reports(self, notification: Notification) -> list[RefundReport]:
        """The refunds a recorded notification reports on (none unless its
        reported_status is one of a refund's): what the refund service matches against
        the refunds it asked for, by idempotency key or provider refund id."""
        return []


def status_notification(provider: str, status: TransactionStatus,
                        received_at_ms: int) -> Notification:
    """A status-API answer in the form of a notification, so that a confirmed hint and
    a reconciliation take the very path a signed notification takes. One event id per
    transaction and state: asking twice records a duplicate, never a second payment."""
    return Notification(
        provider=provider,
        event_id=f"status:{status.trx_id}:{status.state.value}"[:64],
        trx_id=status.trx_id,
        amount=status.amount or 0,
        reported_status=(REPORTED_PAID if status.state == TransactionState.PAID
                         else status.state.value),
        paid_at_ms=status.paid_at_ms,
        received_at_ms=received_at_ms,
        raw_body=status.raw_body,
        fee=status.fee,
    )


def unconfirmed(provider: str, notification: Notification) -> Notification:
    """An authentic notification whose payment (or refund) the status API could not be
    asked about now: kept, changing nothing, under an event id of its own, so that the
    provider's next delivery of it is still confirmed and applied, and reconciliation
    finishes the payment meanwhile."""
    log_event(log, "notification_unconfirmed", level=logging.WARNING, provider=provider,
              trxId=notification.trx_id, eventId=notification.event_id,
              claimed=notification.reported_status)
    return replace(notification, event_id=f"unconfirmed:{notification.event_id}"[:64],
                   reported_status=UNCONFIRMED_STATUS)


def confirmed_body(notification_raw: str, status_raw: str) -> str:
    """What the ledger keeps of a confirmed notification: what the provider pushed, and
    what its status API said, which is what was applied."""
    return json.dumps({"notification": notification_raw, "status": status_raw})
