"""The payment-provider interface. One module per provider implements it.

A provider creates a one-time dynamic QRIS, authenticates its own notifications, and
answers status questions. The optional parts have defaults here, so an adapter only
overrides what its API really offers: `cancel` (Midtrans can; most cannot) and
`authenticate` (otomatis.vip signs nothing, so it confirms a hint with its status API).
"""

from __future__ import annotations

import abc
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

import aiohttp

from gateway.errors import InvalidRequest
from gateway.ids import TRX_ID
from gateway.logs import log_event
from gateway.model import REPORTED_PAID, UNREADABLE_STATUS, Notification

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


class Provider(abc.ABC):
    name: str
    # The URL the provider should notify, for APIs that take one per transaction;
    # None when the operator pastes it into the provider's dashboard instead.
    callback_url: str | None = None
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
