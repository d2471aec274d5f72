"""Midtrans Core API, `payment_type: qris` (see ../shared/providers.md, "Midtrans").

- trxId is our `order_id` (the reference we hand it); its own transaction UUID, which
  it writes in the payload's tag 62.50, stays in the raw answers only.
- Notifications carry `signature_key = SHA-512(order_id + status_code + gross_amount +
  server key)`, computed over the body's own strings (`gross_amount` keeps its ".00").
- Paid means status_code 200, `settlement` or `capture`, and fraud status `accept`.
- Automatic Fee Imposition makes `gross_amount` the price plus the payer's fee, in the
  body and in the signature; `metadata.extra_info.gross_amount_info` then names the
  original amount, which is what is compared with the price, the fee kept beside it.
- Its expiry scheduler runs in batches (unreliable under 15 minutes), so the payment
  window's end is also enforced by calling its expire API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from gateway.clock import Clock
from gateway.errors import InvalidRequest, NotificationRejected, ProviderBadResponse
from gateway.logs import log_event
from gateway.model import REPORTED_PAID, Notification
from gateway.parsing import PROVIDER_JSON_MAX_DEPTH, too_deep
from gateway.providers.base import (
    CreatedQris,
    Provider,
    TransactionState,
    TransactionStatus,
    UnreadableNotification,
    path_id,
)
from gateway.providers.http_api import call_json, whole_rupiah
from gateway.providers.values import wib_ms, wib_text

PRODUCTION_URL = "https://api.midtrans.com"
SANDBOX_URL = "https://api.sandbox.midtrans.com"
_PAID_STATUSES = frozenset({"settlement", "capture"})
_ENDED_STATUSES = frozenset({"expire", "cancel", "deny", "failure"})

log = logging.getLogger("gateway.providers.midtrans")


class MidtransProvider(Provider):
    name = "midtrans"

    def __init__(self, server_key: str, clock: Clock, *, base_url: str | None = None,
                 timeout_s: float = 10, callback_url: str | None = None) -> None:
        self._server_key = server_key
        self._clock = clock
        self._base_url = (base_url or PRODUCTION_URL).rstrip("/")
        self._timeout_s = timeout_s
        self.callback_url = callback_url
        token = base64.b64encode(f"{server_key}:".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}

    async def _call(self, method: str, path: str, body: Any = None,
                    extra_headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        return await call_json(self.http, self.name, method, self._base_url + path,
                               timeout_seconds=self._timeout_s, json=body,
                               headers={**self._headers, **(extra_headers or {})})

    async def create_qris(
        self, reference: str, amount_rupiah: int, expires_at_ms: int
    ) -> CreatedQris:
        now_ms = self._clock()
        minutes = max(1, math.ceil((expires_at_ms - now_ms) / 60_000))
        body = {
            "payment_type": "qris",
            "transaction_details": {"order_id": reference, "gross_amount": amount_rupiah},
            "qris": {"acquirer": "gopay"},
            "custom_expiry": {
                "order_time": wib_text(now_ms),
                "expiry_duration": minutes,
                "unit": "minute",
            },
        }
        # Per transaction, so the dashboard's URL cannot send our payments elsewhere.
        headers = {"X-Override-Notification": self.callback_url} if self.callback_url else {}
        _, answer = await self._call("POST", "/v2/charge", body, headers)
        if not isinstance(answer, dict) or str(answer.get("status_code")) != "201":
            raise ProviderBadResponse(detail=_describe(answer))
        qr_string, transaction_id = answer.get("qr_string"), answer.get("transaction_id")
        if not isinstance(qr_string, str) or not isinstance(transaction_id, str):
            raise ProviderBadResponse(detail="charge answer without qr_string")
        gross = whole_rupiah(answer.get("gross_amount"))
        fee = gross - amount_rupiah if gross is not None and gross > amount_rupiah else 0
        return CreatedQris(trx_id=reference, qr_string=qr_string, fee=fee)

    def verify_notification(
        self, headers: Mapping[str, str], raw_body: bytes, received_at_ms: int
    ) -> Notification:
        # The signature lives inside the body: a body that cannot be read is as good as
        # unsigned, and is refused like a forgery.
        try:
            if too_deep(raw_body, PROVIDER_JSON_MAX_DEPTH):
                raise ValueError("nested too deep")
            body = json.loads(raw_body)
        except ValueError:
            raise NotificationRejected(reason="malformed body") from None
        if not isinstance(body, dict):
            raise NotificationRejected(reason="malformed body")
        order_id, status_code = body.get("order_id"), body.get("status_code")
        gross_amount, signature = body.get("gross_amount"), body.get("signature_key")
        if not all(isinstance(v, str) for v in (order_id, status_code, gross_amount, signature)):
            raise NotificationRejected(reason="missing signature")
        expected = hashlib.sha512(
            f"{order_id}{status_code}{gross_amount}{self._server_key}".encode()
        ).hexdigest()
        if not hmac.compare_digest(str(signature).lower(), expected):
            raise NotificationRejected(reason="bad signature")
        if not order_id or len(str(order_id)) > 64:
            raise UnreadableNotification("order_id is not one of ours")
        try:
            status = self._status_from(body, raw_body.decode("utf-8", "replace"))
        except InvalidRequest as unreadable:
            raise UnreadableNotification(str(unreadable.params["detail"]),
                                         trx_id=str(order_id)) from None
        transaction_status = str(body.get("transaction_status") or "")
        return Notification(
            provider=self.name,
            # Midtrans has no event id; one event per transaction and status is what it
            # means by "be idempotent on order_id" while still hearing every change.
            event_id=f"{body.get('transaction_id') or order_id}:{transaction_status}"[:64],
            trx_id=str(order_id),
            amount=status.amount or 0,
            reported_status=REPORTED_PAID if status.state == TransactionState.PAID
            else transaction_status or "unknown",
            paid_at_ms=status.paid_at_ms,
            received_at_ms=received_at_ms,
            raw_body=status.raw_body,
            fee=status.fee,
        )

    def _status_from(self, body: dict[str, Any], raw_body: str) -> TransactionStatus:
        """What a notification or a status answer says, in neutral terms."""
        order_id = str(body.get("order_id") or "")
        transaction_status = body.get("transaction_status")
        gross = whole_rupiah(body.get("gross_amount"))
        if gross is None:
            raise InvalidRequest(detail="gross_amount is not a whole rupiah amount")
        amount, fee = gross, 0
        info = (_dict(_dict(body.get("metadata")).get("extra_info"))
                .get("gross_amount_info"))
        if isinstance(info, dict):
            original = whole_rupiah(info.get("original_amount"))
            if original is None or original > gross:
                raise InvalidRequest(detail="gross_amount_info.original_amount is unreadable")
            amount, fee = original, gross - original
        paid = (
            str(body.get("status_code")) == "200"
            and transaction_status in _PAID_STATUSES
            and body.get("fraud_status", "accept") == "accept"
        )
        if paid:
            state = TransactionState.PAID
        elif transaction_status in _ENDED_STATUSES:
            state = TransactionState.EXPIRED
        elif transaction_status == "pending":
            state = TransactionState.PENDING
        else:
            state = TransactionState.UNKNOWN
        paid_at_ms = wib_ms(body.get("settlement_time") or body.get("transaction_time")) \
            if paid else None
        return TransactionStatus(order_id, state, amount, paid_at_ms, fee=fee,
                                 raw_body=raw_body)

    async def _transaction_status(self, trx_id: str) -> TransactionStatus:
        status, answer = await self._call("GET", f"/v2/{path_id(trx_id)}/status")
        if not isinstance(answer, dict):
            raise ProviderBadResponse(detail="status answer is not an object")
        if str(answer.get("status_code")) == "404" or status == 404:
            return TransactionStatus(trx_id, TransactionState.UNKNOWN, None, None)
        if answer.get("order_id") != trx_id:
            raise ProviderBadResponse(detail=_describe(answer))
        return self._status_from(answer, json.dumps(answer))

    async def cancel(self, trx_id: str) -> bool:
        """Midtrans' expire API ends a pending transaction now, instead of whenever its
        batch scheduler gets round to it."""
        _, answer = await self._call("POST", f"/v2/{path_id(trx_id)}/expire")
        expired = isinstance(answer, dict) and str(answer.get("status_code")) == "407"
        log_event(log, "provider_transaction_expired" if expired else
                  "provider_transaction_not_expired", trxId=trx_id,
                  answer=_describe(answer))
        return expired


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _describe(answer: object) -> str:
    """An answer's status, for logs: never the whole body (it may hold the QR)."""
    if isinstance(answer, dict):
        return f"{answer.get('status_code')} {str(answer.get('status_message'))[:120]}"
    return type(answer).__name__
