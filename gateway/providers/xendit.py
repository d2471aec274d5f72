"""Xendit, QR Codes API version 2022-07-31: one DYNAMIC QRIS per session.

Construct it as

    XenditProvider(secret_key=settings GATEWAY_XENDIT_SECRET_KEY,
                   callback_token=settings GATEWAY_XENDIT_CALLBACK_TOKEN,
                   http=None (open() gives it the app's client), clock=app[CLOCK],
                   base_url=GATEWAY_PROVIDER_URL or DEFAULT_BASE_URL)

- Create: `POST {base}/qr_codes` with header `api-version: 2022-07-31`, HTTP Basic auth
  `secret_key:` and `{reference_id: <our reference>, type: DYNAMIC, currency: IDR,
  amount, expires_at: <end of our payment window, ISO 8601 UTC>}`. The trxId is the
  answer's `id` (`qr_...`). The callback URL is not sent: this API version takes it from
  the dashboard (Settings > Webhooks > "QR code paid & refunded"), where the operator
  pastes `{GATEWAY_PUBLIC_URL}/api/payment-callback`.
- Callback: Xendit sends successful payments (`event: qr.payment`) and refund outcomes
  (`qr.refund`). It carries the dashboard's static verification token in
  `x-callback-token`, compared in constant time; the body itself is signed by nothing,
  so anyone holding the token (or a captured callback) could rewrite it. A callback is
  therefore only believed once the status API agrees: a payment is recorded as the QR's
  payments list shows it (its `qrpy_...` id is the event id, so Xendit's retries are
  duplicates), a refund as `GET .../refunds/{id}` shows it. When Xendit cannot be
  asked, the callback is kept as `unconfirmed` and reconciliation finishes the payment.
- Status: `GET {base}/qr_codes/{id}/payments` (a succeeded payment means paid), else
  `GET {base}/qr_codes/{id}` (ACTIVE and unexpired means pending).
- Refund: `POST {base}/qr_codes/payments/{qrpy_id}/refunds {amount, reason}` with an
  `Idempotency-key` header; the answer is always PENDING (`qrrf_...`), the outcome comes
  by `qr.refund` callback. Test keys answer refund amounts 10300-10305 with errors.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, ClassVar

import aiohttp
import msgspec
from msgspec import Meta

from gateway.clock import Clock
from gateway.errors import NotificationRejected, ProviderUnavailable
from gateway.ids import TRX_ID
from gateway.logs import log_event
from gateway.model import (
    REPORTED_PAID,
    REPORTED_REFUND_FAILED,
    REPORTED_REFUND_PENDING,
    REPORTED_REFUND_SUCCEEDED,
    Notification,
)
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
from gateway.providers.http_api import (
    Answer,
    call,
    checked_qris,
    decode,
    excerpt,
    iso_to_ms,
    log,
    rate_limited,
    refused,
    whole_rupiah,
)

DEFAULT_BASE_URL = "https://api.xendit.co"
API_VERSION = "2022-07-31"
CALLBACK_TOKEN_HEADER = "x-callback-token"
IDEMPOTENCY_HEADER = "Idempotency-key"  # as Xendit's own SDKs spell it
PAID_STATUSES = frozenset({"SUCCEEDED", "COMPLETED"})
_REFUND_STATUSES = {"PENDING": RefundStatus.REQUESTED, "SUCCEEDED": RefundStatus.SUCCEEDED,
                    "FAILED": RefundStatus.FAILED}
_REPORTED_REFUND = {RefundStatus.REQUESTED: REPORTED_REFUND_PENDING,
                    RefundStatus.SUCCEEDED: REPORTED_REFUND_SUCCEEDED,
                    RefundStatus.FAILED: REPORTED_REFUND_FAILED}
_REFUND_BY_REPORTED = {reported: status for status, reported in _REPORTED_REFUND.items()}

_Id = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")]
# Ids that go into a URL path when a refund is confirmed: the grammar path_id accepts.
_PathId = Annotated[str, Meta(pattern=f"^{TRX_ID.pattern}$")]


class _QrCode(msgspec.Struct):
    id: Annotated[str, Meta(pattern=r"^qr_[A-Za-z0-9_-]{1,96}$")]
    qr_string: Annotated[str, Meta(min_length=1, max_length=512)]
    amount: float
    status: str = ""
    reference_id: str | None = None
    expires_at: str | None = None


class _QrPayment(msgspec.Struct):
    id: _Id
    amount: float
    status: str
    qr_id: _Id | None = None
    created: str | None = None


class _QrPayments(msgspec.Struct):
    data: list[_QrPayment]


class _QrRefund(msgspec.Struct):
    """The refund object: the refund call's answer, `data` of a qr.refund callback."""

    id: _PathId
    qrpy_id: _PathId
    status: str
    refund_amount: float | None = None
    failure_code: str | None = None


class _Kind(msgspec.Struct):
    event: str


class _Event(msgspec.Struct):
    """The 2022-07-31 callback: `{event, data: {id: qrpy_..., qr_id, amount, status}}`."""

    event: str
    data: _QrPayment


class _RefundEvent(msgspec.Struct):
    event: str
    data: _QrRefund


class _LegacyQrCode(msgspec.Struct):
    id: _Id


class _LegacyEvent(msgspec.Struct):
    """The v1 callback, still sent to accounts set up before 2022-07-31:
    `{event, id: qrpy_..., amount, status: COMPLETED, qr_code: {id, ...}}`."""

    event: str
    id: _Id
    amount: float
    status: str
    qr_code: _LegacyQrCode
    created: str | None = None


class XenditProvider(Provider):
    name = "xendit"
    refunds_by_api: ClassVar[bool] = True

    def __init__(self, secret_key: str, callback_token: str, http: aiohttp.ClientSession | None,
                 clock: Clock, base_url: str = DEFAULT_BASE_URL,
                 timeout_seconds: float = 10.0) -> None:
        if not secret_key or not callback_token:
            raise ValueError("Xendit needs a secret key and a callback verification token")
        # HTTP Basic with the secret key as user name and no password.
        self._authorization = "Basic " + base64.b64encode(f"{secret_key}:".encode()).decode()
        self._callback_token = callback_token.encode()
        self._http = http  # or given later by open(), like every provider
        self._clock = clock
        self._base_url = base_url.rstrip("/")
        self._timeout_seconds = timeout_seconds

    def _headers(self) -> dict[str, str]:
        return {"api-version": API_VERSION, "Accept": "application/json",
                "Authorization": self._authorization}

    async def _get(self, path: str) -> Answer:
        return await call(self.http, self.name, "GET", self._base_url + path,
                          timeout_seconds=self._timeout_seconds, headers=self._headers())

    async def create_qris(
        self, reference: str, amount_rupiah: int, expires_at_ms: int
    ) -> CreatedQris:
        body = {
            "reference_id": reference,
            "type": "DYNAMIC",
            "currency": "IDR",
            "amount": amount_rupiah,
            "expires_at": _iso_utc(expires_at_ms),
        }
        answer = await call(self.http, self.name, "POST", f"{self._base_url}/qr_codes",
                            timeout_seconds=self._timeout_seconds, json=body,
                            headers=self._headers())
        if answer.status == 429:  # RATE_LIMIT_EXCEEDED: nothing made; the line waits
            raise rate_limited(self.name, "create", answer)
        if answer.status not in (200, 201):
            raise refused(self.name, "create", answer)
        created = decode(self.name, answer, _QrCode)
        # Xendit never adds a fee to what the payer is asked: the QR carries the price.
        checked_qris(self.name, created.id, created.qr_string, amount_rupiah)
        return CreatedQris(trx_id=created.id, qr_string=created.qr_string, fee=0)

    def verify_notification(
        self, headers: Mapping[str, str], raw_body: bytes, received_at_ms: int
    ) -> Notification:
        token = headers.get(CALLBACK_TOKEN_HEADER)
        if not token:
            raise NotificationRejected(reason="missing callback token")
        if not hmac.compare_digest(token.encode("utf-8", "replace"), self._callback_token):
            raise NotificationRejected(reason="bad callback token")
        if too_deep(raw_body, PROVIDER_JSON_MAX_DEPTH):
            raise UnreadableNotification("JSON nested too deep")
        if _event_of(raw_body) == "qr.refund":
            return _refund_notification(_decode_refund_event(raw_body).data,
                                        raw_body.decode("utf-8", "replace"), received_at_ms)
        payment_id, trx_id, amount, status, created = _parse_payment_event(raw_body)
        reported_amount = whole_rupiah(amount)
        return Notification(
            provider=self.name,
            event_id=payment_id,
            trx_id=trx_id,
            # A fractional or non-positive amount is stored as 0: never equal to a price,
            # so it is kept as a mismatch instead of being refused.
            amount=reported_amount if reported_amount is not None else 0,
            reported_status=REPORTED_PAID if status.upper() in PAID_STATUSES else status.lower(),
            paid_at_ms=iso_to_ms(created),
            received_at_ms=received_at_ms,
            raw_body=raw_body.decode("utf-8", "replace"),
            # The token is static, so a delivery has no identity of its own: a replay is
            # the same payment id again, which the store already treats as a duplicate.
            replay_key=None,
        )

    async def authenticate(
        self, headers: Mapping[str, str], raw_body: bytes, received_at_ms: int
    ) -> Notification:
        """A payment or refund callback is recorded as the status API tells it: the
        token proves who sent it, not what it says."""
        note = await super().authenticate(headers, raw_body, received_at_ms)
        try:
            if note.reported_status == REPORTED_PAID:
                return await self._confirmed_payment(note, received_at_ms)
            if note.reported_status in _REFUND_BY_REPORTED:
                return await self._confirmed_refund(note, received_at_ms)
        except ProviderUnavailable:
            return unconfirmed(self.name, note)
        return note

    async def _confirmed_payment(self, note: Notification,
                                 received_at_ms: int) -> Notification:
        status = await self._status(note.trx_id, payment_id=note.event_id)
        confirmed = status_notification(self.name, status, received_at_ms)
        if status.payment_id is not None:  # one payment, one event: Xendit's own id
            confirmed = replace(confirmed, event_id=status.payment_id)
        return replace(confirmed, raw_body=confirmed_body(note.raw_body, status.raw_body))

    async def _confirmed_refund(self, note: Notification,
                                received_at_ms: int) -> Notification:
        claimed = _decode_refund_event(note.raw_body.encode()).data
        answer = await self._get(f"/qr_codes/payments/{path_id(claimed.qrpy_id)}/refunds/"
                                 f"{path_id(claimed.id)}")
        if answer.status == 404:  # no such refund at Xendit: what the callback says is moot
            return replace(note, event_id=f"status:{claimed.id}:unknown"[:64],
                           reported_status="unknown",
                           raw_body=confirmed_body(note.raw_body, ""))
        if answer.status != 200:
            raise refused(self.name, "get refund", answer)
        refund = decode(self.name, answer, _QrRefund)
        return _refund_notification(refund, confirmed_body(note.raw_body, _text(answer)),
                                    received_at_ms)

    async def _payments(self, trx_id: str) -> tuple[list[_QrPayment], Answer] | None:
        """The QR's payments (at most one: a dynamic QR is paid once), None when Xendit
        does not know the QR."""
        answer = await self._get(f"/qr_codes/{path_id(trx_id)}/payments")
        if answer.status == 404:
            return None
        if answer.status != 200:
            raise refused(self.name, "payments", answer)
        return decode(self.name, answer, _QrPayments).data, answer

    async def _transaction_status(self, trx_id: str) -> TransactionStatus:
        return await self._status(trx_id)

    async def _status(self, trx_id: str, payment_id: str | None = None) -> TransactionStatus:
        """The QR's state; when paid, the payment named `payment_id` if it is one of
        its succeeded payments, else the first."""
        unknown = TransactionStatus(trx_id, TransactionState.UNKNOWN, None, None)
        if not trx_id.startswith("qr_") or not TRX_ID.fullmatch(trx_id):
            return unknown
        found = await self._payments(trx_id)
        if found is None:
            return unknown
        payments, listed = found
        paid = sorted((p for p in payments if p.status.upper() in PAID_STATUSES),
                      key=lambda p: p.id != payment_id)
        if paid:
            payment = paid[0]
            return TransactionStatus(trx_id, TransactionState.PAID,
                                     whole_rupiah(payment.amount), iso_to_ms(payment.created),
                                     raw_body=_text(listed), payment_id=payment.id)
        answer = await self._get(f"/qr_codes/{path_id(trx_id)}")
        if answer.status == 404:
            return unknown
        if answer.status != 200:
            raise refused(self.name, "get", answer)
        qr = decode(self.name, answer, _QrCode)
        expires_at_ms = iso_to_ms(qr.expires_at)
        still_payable = qr.status.upper() == "ACTIVE" and (
            expires_at_ms is None or self._clock() < expires_at_ms)
        state = TransactionState.PENDING if still_payable else TransactionState.EXPIRED
        return TransactionStatus(trx_id, state, whole_rupiah(qr.amount), None,
                                 raw_body=_text(listed))

    async def refund(self, request: RefundRequest) -> RefundOutcome:
        try:
            payment_id = request.payment_id or await self._payment_id(request.trx_id)
        except ProviderUnavailable:
            return RefundOutcome(RefundStatus.UNKNOWN)
        if payment_id is None:
            return RefundOutcome(RefundStatus.FAILED, failure_code="NO_PAYMENT")
        try:
            answer = await call(
                self.http, self.name, "POST",
                f"{self._base_url}/qr_codes/payments/{path_id(payment_id)}/refunds",
                timeout_seconds=self._timeout_seconds,
                json={"amount": request.amount_rupiah,
                      "reason": request.reason[:MAX_REFUND_REASON_CHARS]},
                headers={**self._headers(), IDEMPOTENCY_HEADER: request.idempotency_key})
        except ProviderUnavailable:  # no answer or 5xx: it may have been taken
            return RefundOutcome(RefundStatus.UNKNOWN)
        raw = _text(answer)
        if 200 <= answer.status < 300:
            try:
                refund = msgspec.json.decode(answer.raw, type=_QrRefund)
            except (msgspec.ValidationError, msgspec.DecodeError):
                return RefundOutcome(RefundStatus.UNKNOWN, raw_body=raw)
            return RefundOutcome(_REFUND_STATUSES.get(refund.status.upper(),
                                                      RefundStatus.REQUESTED),
                                 refund.id, raw, refund.failure_code)
        if answer.status == 429:  # RATE_LIMIT_EXCEEDED: not taken, ask again later
            return RefundOutcome(RefundStatus.UNKNOWN, raw_body=raw)
        if answer.status == 409:
            # This key was used before (DUPLICATE_ERROR / IDEMPOTENCY_ERROR): Xendit
            # has that refund; its qr.refund callback tells how it ends.
            return RefundOutcome(RefundStatus.REQUESTED, raw_body=raw)
        code = _error_code(answer)
        log_event(log, "refund_refused", level=logging.WARNING, provider=self.name,
                  trxId=request.trx_id, paymentId=payment_id, status=answer.status,
                  errorCode=code)
        return RefundOutcome(RefundStatus.FAILED, raw_body=raw, failure_code=code)

    async def _payment_id(self, trx_id: str) -> str | None:
        """The QR's payment, whatever has happened to it since (a refunded one is
        REFUNDED or VOIDED, and may be refunded further)."""
        if not trx_id.startswith("qr_"):
            return None
        found = await self._payments(trx_id)
        return found[0][0].id if found and found[0] else None

    def refund_reports(self, notification: Notification) -> list[RefundReport]:
        status = _REFUND_BY_REPORTED.get(notification.reported_status)
        if status is None:
            return []
        try:
            refund = msgspec.json.decode(json.loads(notification.raw_body)["status"],
                                         type=_QrRefund)
        except (ValueError, KeyError, TypeError, msgspec.ValidationError):
            return []
        return [RefundReport(trx_id="", status=status, provider_refund_id=refund.id,
                             idempotency_key=None, payment_id=refund.qrpy_id,
                             amount_rupiah=whole_rupiah(refund.refund_amount),
                             failure_code=refund.failure_code)]


def _refund_notification(refund: _QrRefund, raw_body: str,
                         received_at_ms: int) -> Notification:
    status = _REFUND_STATUSES.get(refund.status.upper(), RefundStatus.REQUESTED)
    return Notification(
        provider=XenditProvider.name,
        event_id=f"{refund.id}:{status.value}"[:64],
        # The refund names its payment, not the QR: the refund service finds it by the
        # refund's own id, which the refund call answered.
        trx_id="",
        amount=whole_rupiah(refund.refund_amount) or 0,
        reported_status=_REPORTED_REFUND[status],
        paid_at_ms=None,
        received_at_ms=received_at_ms,
        raw_body=raw_body,
    )


def _event_of(raw_body: bytes) -> str:
    try:
        return msgspec.json.decode(raw_body, type=_Kind).event
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise UnreadableNotification(str(exc)) from None


def _decode_refund_event(raw_body: bytes) -> _RefundEvent:
    try:
        return msgspec.json.decode(raw_body, type=_RefundEvent)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise UnreadableNotification(str(exc)) from None


def _parse_payment_event(raw_body: bytes) -> tuple[str, str, float, str, str | None]:
    """(payment id, QR id, amount, status, created) from either callback shape."""
    try:
        event = msgspec.json.decode(raw_body, type=_Event)
    except msgspec.ValidationError as current_problem:
        try:
            legacy = msgspec.json.decode(raw_body, type=_LegacyEvent)
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise UnreadableNotification(str(current_problem)) from None
        _require_qr_payment_event(legacy.event)
        return legacy.id, legacy.qr_code.id, legacy.amount, legacy.status, legacy.created
    except msgspec.DecodeError as exc:
        raise UnreadableNotification(str(exc)) from None
    _require_qr_payment_event(event.event)
    payment = event.data
    if payment.qr_id is None:
        raise UnreadableNotification("data.qr_id is missing")
    return payment.id, payment.qr_id, payment.amount, payment.status, payment.created


def _require_qr_payment_event(event: str) -> None:
    if event != "qr.payment":
        raise UnreadableNotification(f"not a QR payment event: {event[:40]!r}")


def _error_code(answer: Answer) -> str:
    """Xendit's `{error_code, message}`; the HTTP status when the body is not that."""
    try:
        body = json.loads(answer.raw)
    except ValueError:
        body = None
    code = body.get("error_code") if isinstance(body, dict) else None
    if isinstance(code, str) and code:
        return code[:64]
    log_event(log, "provider_answer_unreadable", level=logging.WARNING, provider="xendit",
              status=answer.status, answer=excerpt(answer.raw))
    return f"http_{answer.status}"


def _text(answer: Answer) -> str:
    return answer.raw.decode("utf-8", "replace")


def _iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
