"""The simulator: plays a QRIS provider locally, for the demo and the tests.

It builds a real dynamic QRIS payload (scannable, CRC-checked, but payable by nobody)
and signs its notifications like a serious provider would:

    X-Gateway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

A receiver verifies the HMAC over the raw bytes in constant time, refuses timestamps
more than `tolerance_seconds` away from its clock, and remembers (t, v1) pairs so a
captured request cannot be replayed.

It refunds at once and in full or in part, never more than was paid, and answers a
repeated idempotency key with the first outcome, as a real refund API would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from typing import Annotated, ClassVar

import msgspec
from msgspec import Meta

from gateway import qris
from gateway.clock import Clock
from gateway.errors import NotificationRejected
from gateway.model import Notification
from gateway.parsing import decode_json, is_ascii_int
from gateway.providers.base import (
    CreatedQris,
    Provider,
    RefundOutcome,
    RefundRequest,
    RefundStatus,
    TransactionState,
    TransactionStatus,
)
from gateway.qris import MerchantProfile

SIGNATURE_HEADER = "X-Gateway-Signature"
_TRACKED_TRANSACTIONS = 100_000


class _Event(msgspec.Struct, rename="camel"):
    event_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    trx_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    amount: Annotated[int, Meta(gt=0, le=10**12)]
    status: Annotated[str, Meta(pattern=r"^[a-z_]{1,32}$")]
    paid_at: Annotated[int, Meta(ge=0, le=10**14)] | None = None


class SimulatorProvider(Provider):
    name = "simulator"
    refunds_by_api: ClassVar[bool] = True

    def __init__(self, merchant: MerchantProfile, webhook_secret: bytes, clock: Clock,
                 tolerance_seconds: int = 300) -> None:
        self._merchant = merchant
        self._secret = webhook_secret
        self._clock = clock
        self._tolerance_seconds = tolerance_seconds
        # What the "provider" knows about its transactions, for transaction_status.
        self._transactions: OrderedDict[str, TransactionStatus] = OrderedDict()
        # Refunds by idempotency key, and what each transaction has had back.
        self._refunds: OrderedDict[str, RefundOutcome] = OrderedDict()
        self._refunded_rupiah: dict[str, int] = {}

    async def create_qris(
        self, reference: str, amount_rupiah: int, expires_at_ms: int
    ) -> CreatedQris:
        trx_id = "SIM" + base64.b32encode(secrets.token_bytes(10)).decode()
        payload = qris.build_dynamic(self._merchant, amount_rupiah, trx_id)
        self._remember(TransactionStatus(trx_id, TransactionState.PENDING, amount_rupiah, None))
        return CreatedQris(trx_id=trx_id, qr_string=payload, fee=0, qr_reference=trx_id)

    def _remember(self, status: TransactionStatus) -> None:
        self._transactions[status.trx_id] = status
        self._transactions.move_to_end(status.trx_id)
        while len(self._transactions) > _TRACKED_TRANSACTIONS:
            self._transactions.popitem(last=False)

    async def _transaction_status(self, trx_id: str) -> TransactionStatus:
        return self._transactions.get(
            trx_id, TransactionStatus(trx_id, TransactionState.UNKNOWN, None, None)
        )

    async def refund(self, request: RefundRequest) -> RefundOutcome:
        done = self._refunds.get(request.idempotency_key)
        if done is not None:
            return done
        paid = self._transactions.get(request.trx_id)
        refunded_rupiah = self._refunded_rupiah.get(request.trx_id, 0)
        if paid is None or paid.state != TransactionState.PAID or paid.amount is None:
            outcome = RefundOutcome(RefundStatus.FAILED, failure_code="not_paid")
        elif refunded_rupiah + request.amount_rupiah > paid.amount:
            outcome = RefundOutcome(RefundStatus.FAILED, failure_code="more_than_remains")
        else:
            self._refunded_rupiah[request.trx_id] = refunded_rupiah + request.amount_rupiah
            outcome = RefundOutcome(RefundStatus.SUCCEEDED,
                                    "simrf_" + secrets.token_hex(10))
        self._refunds[request.idempotency_key] = outcome
        while len(self._refunds) > _TRACKED_TRANSACTIONS:
            self._refunds.popitem(last=False)
        return outcome

    def pay(self, trx_id: str, amount_rupiah: int) -> tuple[dict[str, str], bytes]:
        """Play the payer's bank: the signed notification the provider would send."""
        now_ms = self._clock()
        self._remember(TransactionStatus(trx_id, TransactionState.PAID, amount_rupiah, now_ms))
        body = json.dumps({
            "eventId": "evt_" + secrets.token_hex(12),
            "trxId": trx_id,
            "amount": amount_rupiah,
            "status": "paid",
            "paidAt": now_ms,
        }).encode()
        return {SIGNATURE_HEADER: self.signature(body, now_ms // 1000),
                "Content-Type": "application/json"}, body

    def signature(self, raw_body: bytes, timestamp_s: int) -> str:
        mac = hmac.new(self._secret, f"{timestamp_s}.".encode() + raw_body, hashlib.sha256)
        return f"t={timestamp_s},v1={mac.hexdigest()}"

    def verify_notification(
        self, headers: Mapping[str, str], raw_body: bytes, received_at_ms: int
    ) -> Notification:
        header = headers.get(SIGNATURE_HEADER)
        if not header:
            raise NotificationRejected(reason="missing signature")
        timestamp, candidates = _parse_signature_header(header)
        if timestamp is None or not candidates:
            raise NotificationRejected(reason="malformed signature header")
        if abs(received_at_ms // 1000 - timestamp) > self._tolerance_seconds:
            raise NotificationRejected(reason="timestamp outside the tolerance window")
        expected = hmac.new(self._secret, f"{timestamp}.".encode() + raw_body,
                            hashlib.sha256).hexdigest()
        matched = next((c for c in candidates if hmac.compare_digest(c, expected)), None)
        if matched is None:
            raise NotificationRejected(reason="bad signature")
        event = decode_json(raw_body, _Event)
        return Notification(
            provider=self.name,
            event_id=event.event_id,
            trx_id=event.trx_id,
            amount=event.amount,
            reported_status=event.status,
            paid_at_ms=event.paid_at,
            received_at_ms=received_at_ms,
            raw_body=raw_body.decode("utf-8", "replace"),
            replay_key=f"{timestamp}.{matched}",
        )


def _parse_signature_header(header: str) -> tuple[int | None, list[str]]:
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and is_ascii_int(value, max_digits=12):
            timestamp = int(value)
        elif key == "v1" and re.fullmatch(r"[0-9a-fA-F]{64}", value):
            candidates.append(value.lower())
    return timestamp, candidates
