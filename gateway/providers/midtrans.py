"""Midtrans Core API, `payment_type: qris` (see ../shared/providers.md, "Midtrans").

- trxId is our `order_id` (the reference we hand it); its own transaction UUID, which
  it writes in the payload's tag 62.50, stays in the raw answers only.
- The QR's acquirer is GATEWAY_MIDTRANS_ACQUIRER (`gopay` or `airpay shopee`), sent as
  `qris.acquirer`.
- Notifications carry `signature_key = SHA-512(order_id + status_code + gross_amount +
  server key)`, computed over the body's own strings (`gross_amount` keeps its ".00").
  That is all it signs: `transaction_status`, `transaction_id` and the rest could be
  rewritten in a captured notification (a signed "cancel" made "settlement"). So a
  notification that would pay (or report a refund) is confirmed with the GET status
  API first, and what that answer says is what is recorded; when Midtrans cannot be
  asked, it is kept as `unconfirmed` and reconciliation finishes the payment.
- Paid means status_code 200, `settlement` or `capture`, and fraud status `accept`.
- Automatic Fee Imposition makes `gross_amount` the price plus the payer's fee, in the
  body and in the signature; `metadata.extra_info.gross_amount_info` then names the
  original amount, which is what is compared with the price, the fee kept beside it.
- Its expiry scheduler runs in batches (unreliable under 15 minutes), so the payment
  window's end is also enforced by calling its expire API.
- Refunds: `POST /v2/{order_id}/refund/online/direct {refund_key, amount, reason}`.
  Every answer but a bad key's comes as HTTP 200 with the real code in the body's
  `status_code`: 200 refunded, 202 denied by the bank, 406 this refund_key was used
  before, 412 not refundable (not settled, window over), 414 more than remains. A
  `refund`/`partial_refund` notification follows a refund that went through.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from gateway.clock import Clock
from gateway.errors import (
    InvalidRequest,
    NotificationRejected,
    ProviderBadResponse,
    ProviderUnavailable,
)
from gateway.logs import log_event
from gateway.model import REPORTED_PAID, REPORTED_REFUND_SUCCEEDED, Notification
from gateway.parsing import PROVIDER_JSON_MAX_DEPTH, too_deep
from gateway.providers.base import (
    MAX_REFUND_REASON_CHARS,
    CreatedQris,
    Provider,
    RefundOutcome,
    RefundReport,
    RefundRequest,
    RefundStatus,
    TransactionState,
    TransactionStatus,
    UnreadableNotification,
    confirmed_body,
    path_id,
    status_notification,
    unconfirmed,
)
from gateway.providers.http_api import call_json, whole_rupiah
from gateway.providers.values import provider_time_ms, wib_text
from gateway.settings import API_ENVIRONMENTS, MIDTRANS_ACQUIRERS

PRODUCTION_URL = API_ENVIRONMENTS["midtrans"].production_url
_PAID_STATUSES = frozenset({"settlement", "capture"})
_ENDED_STATUSES = frozenset({"expire", "cancel", "deny", "failure"})
_REFUND_STATUSES = frozenset({"refund", "partial_refund"})

log = logging.getLogger("gateway.providers.midtrans")


class MidtransProvider(Provider):
    name = "midtrans"
    refunds_by_api: ClassVar[bool] = True

    def __init__(self, server_key: str, clock: Clock, *, base_url: str | None = None,
                 timeout_s: float = 10, callback_url: str | None = None,
                 acquirer: str = "gopay") -> None:
        if acquirer not in MIDTRANS_ACQUIRERS:
            raise ValueError(f"Midtrans QRIS acquirer must be one of {MIDTRANS_ACQUIRERS}")
        self._server_key = server_key
        self._clock = clock
        self._base_url = (base_url or PRODUCTION_URL).rstrip("/")
        self._timeout_s = timeout_s
        self.callback_url = callback_url
        self._acquirer = acquirer
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
            "qris": {"acquirer": self._acquirer},
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
            return self._notification(body, raw_body.decode("utf-8", "replace"),
                                      received_at_ms)
        except InvalidRequest as unreadable:
            raise UnreadableNotification(str(unreadable.params["detail"]),
                                         trx_id=str(order_id)) from None

    async def authenticate(
        self, headers: Mapping[str, str], raw_body: bytes, received_at_ms: int
    ) -> Notification:
        """A signed notification that would pay a session or report a refund is
        recorded as the status API tells it, not as it came."""
        note = await super().authenticate(headers, raw_body, received_at_ms)
        if note.reported_status not in (REPORTED_PAID, REPORTED_REFUND_SUCCEEDED):
            return note  # pending, expire, cancel...: nothing it could grant
        try:
            answer = await self._status_answer(note.trx_id)
            if answer is None:  # Midtrans does not know the order it signed
                status = TransactionStatus(note.trx_id, TransactionState.UNKNOWN, None, None)
                confirmed = status_notification(self.name, status, received_at_ms)
                return replace(confirmed, raw_body=confirmed_body(note.raw_body, ""))
            status_raw = json.dumps(answer)
            confirmed = self._notification(answer, status_raw, received_at_ms)
        except (ProviderUnavailable, InvalidRequest):
            return unconfirmed(self.name, note)
        return replace(confirmed, raw_body=confirmed_body(note.raw_body, status_raw))

    def _notification(self, body: dict[str, Any], raw_body: str,
                      received_at_ms: int) -> Notification:
        """A notification or a status answer (they share their fields) as one."""
        status = self._status_from(body, raw_body)
        transaction_status = str(body.get("transaction_status") or "")
        # Midtrans has no event id; one event per transaction and status is what it
        # means by "be idempotent on order_id" while still hearing every change.
        event_id = f"{body.get('transaction_id') or status.trx_id}:{transaction_status}"
        if transaction_status in _REFUND_STATUSES:
            # One event per refund: its two notifications (before and after the bank
            # confirms) carry the same cumulative refund_amount, the next refund another.
            refunded = whole_rupiah(body.get("refund_amount"))
            return Notification(
                provider=self.name, event_id=f"{event_id}:{refunded or 0}"[:64],
                trx_id=status.trx_id, amount=_newest_refund_rupiah(body) or refunded or 0,
                reported_status=REPORTED_REFUND_SUCCEEDED, paid_at_ms=None,
                received_at_ms=received_at_ms, raw_body=raw_body)
        return Notification(
            provider=self.name,
            event_id=event_id[:64],
            trx_id=status.trx_id,
            amount=status.amount or 0,
            reported_status=REPORTED_PAID if status.state == TransactionState.PAID
            else transaction_status or "unknown",
            paid_at_ms=status.paid_at_ms,
            received_at_ms=received_at_ms,
            raw_body=raw_body,
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
        paid_at_ms = provider_time_ms(body.get("settlement_time")
                                      or body.get("transaction_time")) if paid else None
        return TransactionStatus(order_id, state, amount, paid_at_ms, fee=fee,
                                 raw_body=raw_body)

    async def _status_answer(self, trx_id: str) -> dict[str, Any] | None:
        """GET status's answer about our order; None when Midtrans does not know it."""
        status, answer = await self._call("GET", f"/v2/{path_id(trx_id)}/status")
        if not isinstance(answer, dict):
            raise ProviderBadResponse(detail="status answer is not an object")
        if str(answer.get("status_code")) == "404" or status == 404:
            return None
        if answer.get("order_id") != trx_id:
            raise ProviderBadResponse(detail=_describe(answer))
        return answer

    async def _transaction_status(self, trx_id: str) -> TransactionStatus:
        answer = await self._status_answer(trx_id)
        if answer is None:
            return TransactionStatus(trx_id, TransactionState.UNKNOWN, None, None)
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

    async def refund(self, request: RefundRequest) -> RefundOutcome:
        body = {"refund_key": request.idempotency_key, "amount": request.amount_rupiah,
                "reason": request.reason[:MAX_REFUND_REASON_CHARS]}
        try:
            http_status, answer = await self._call(
                "POST", f"/v2/{path_id(request.trx_id)}/refund/online/direct", body)
        except ProviderUnavailable:  # no answer, 5xx, not JSON: it may have gone through
            return RefundOutcome(RefundStatus.UNKNOWN)
        raw = json.dumps(answer)
        code = str(_dict(answer).get("status_code") or f"http_{http_status}")
        if code == "200":
            return RefundOutcome(RefundStatus.SUCCEEDED, _refund_id(_dict(answer)), raw)
        if code == "406":  # "Duplicate refund ID": our key was used; did it go through?
            return await self._refund_by_key(request, raw)
        if code.startswith("5"):  # Midtrans' own trouble, inside a 200
            return RefundOutcome(RefundStatus.UNKNOWN, raw_body=raw)
        log_event(log, "refund_refused", level=logging.WARNING, trxId=request.trx_id,
                  refundKey=request.idempotency_key, answer=_describe(answer))
        return RefundOutcome(RefundStatus.FAILED, raw_body=raw, failure_code=code)

    async def _refund_by_key(self, request: RefundRequest, refused_raw: str) -> RefundOutcome:
        """GET status lists every refund with its refund_key: ours there means the
        earlier attempt (whose answer we lost) went through."""
        try:
            answer = await self._status_answer(request.trx_id)
        except ProviderUnavailable:
            return RefundOutcome(RefundStatus.UNKNOWN, raw_body=refused_raw)
        for entry in _refund_entries(answer or {}):
            if entry.get("refund_key") == request.idempotency_key:
                return RefundOutcome(RefundStatus.SUCCEEDED, _refund_id(entry),
                                     json.dumps(answer))
        return RefundOutcome(RefundStatus.FAILED, raw_body=refused_raw, failure_code="406")

    def refund_reports(self, notification: Notification) -> list[RefundReport]:
        """Every refund the confirming status answer lists (a notification may come
        after several): the refund service matches them by our refund_key."""
        if notification.reported_status != REPORTED_REFUND_SUCCEEDED:
            return []
        try:
            answer = json.loads(json.loads(notification.raw_body)["status"])
        except (ValueError, KeyError, TypeError):
            return []
        return [RefundReport(trx_id=notification.trx_id, status=RefundStatus.SUCCEEDED,
                             provider_refund_id=_refund_id(entry),
                             idempotency_key=_text(entry.get("refund_key")),
                             payment_id=None,
                             amount_rupiah=whole_rupiah(entry.get("refund_amount")))
                for entry in _refund_entries(_dict(answer))]


def _refund_entries(answer: dict[str, Any]) -> list[dict[str, Any]]:
    refunds = answer.get("refunds")
    return [entry for entry in refunds if isinstance(entry, dict)] \
        if isinstance(refunds, list) else []


def _newest_refund_rupiah(body: dict[str, Any]) -> int | None:
    entries = _refund_entries(body)
    return whole_rupiah(entries[-1].get("refund_amount")) if entries else None


def _refund_id(entry: dict[str, Any]) -> str | None:
    # An integer in every example, though its docs call it a string.
    return _text(entry.get("refund_chargeback_id"))


def _text(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)[:64]


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _describe(answer: object) -> str:
    """An answer's status, for logs: never the whole body (it may hold the QR)."""
    if isinstance(answer, dict):
        return f"{answer.get('status_code')} {str(answer.get('status_message'))[:120]}"
    return type(answer).__name__
