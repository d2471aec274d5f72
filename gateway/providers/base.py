"""The payment-provider interface. One module per provider implements it."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from gateway.model import Notification


@dataclass(frozen=True, slots=True)
class CreatedQris:
    trx_id: str  # the provider's transaction id; also inside the payload's tag 62
    qr_string: str
    fee: int  # what the provider adds on top of the price, whole rupiah


class TransactionState(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class TransactionStatus:
    trx_id: str
    state: TransactionState
    amount: int | None
    paid_at_ms: int | None


class Provider(abc.ABC):
    name: str

    @abc.abstractmethod
    async def create_qris(
        self, reference: str, amount_rupiah: int, expires_at_ms: int
    ) -> CreatedQris:
        """Create a one-time dynamic QRIS. Raises ProviderUnavailable when it cannot."""

    @abc.abstractmethod
    def verify_notification(
        self, headers: Mapping[str, str], raw_body: bytes, received_at_ms: int
    ) -> Notification:
        """Authenticate and parse a callback from its raw bytes (never a re-serialised
        body). Raises NotificationRejected when it is not authentic, InvalidRequest when
        it is authentic but not understood."""

    @abc.abstractmethod
    async def transaction_status(self, trx_id: str) -> TransactionStatus:
        """Ask the provider, server to server, what happened to a transaction."""
