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
  the dashboard (Settings > Webhooks > "QR code paid"), where the operator pastes
  `{GATEWAY_PUBLIC_URL}/api/payment-callback`.
- Callback: Xendit sends only successful payments (`event: qr.payment`). It is authentic
  when its `x-callback-token` header equals the dashboard's verification token, compared
  in constant time (a static token, not an HMAC of the body). `SUCCEEDED` (and the v1
  shape's `COMPLETED`) is a payment; each payment's `qrpy_...` id is its event id, so
  Xendit's retries of one payment are duplicates.
- Status: `GET {base}/qr_codes/{id}/payments` (a succeeded payment means paid), else
  `GET {base}/qr_codes/{id}` (ACTIVE and unexpired means pending).
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated

import aiohttp
import msgspec
from msgspec import Meta

from gateway.clock import Clock
from gateway.errors import NotificationRejected
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
from gateway.providers.http_api import (
    call,
    checked_qris,
    decode,
    iso_to_ms,
    refused,
    whole_rupiah,
)

DEFAULT_BASE_URL = "https://api.xendit.co"
API_VERSION = "2022-07-31"
CALLBACK_TOKEN_HEADER = "x-callback-token"
PAID_STATUSES = frozenset({"SUCCEEDED", "COMPLETED"})

_Id = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")]


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


class _Event(msgspec.Struct):
    """The 2022-07-31 callback: `{event, data: {id: qrpy_..., qr_id, amount, status}}`."""

    event: str
    data: _QrPayment


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
        payment_id, trx_id, amount, status, created = _parse_event(raw_body)
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

    async def _transaction_status(self, trx_id: str) -> TransactionStatus:
        unknown = TransactionStatus(trx_id, TransactionState.UNKNOWN, None, None)
        if not trx_id.startswith("qr_"):
            return unknown
        qr_url = f"{self._base_url}/qr_codes/{path_id(trx_id)}"
        answer = await call(self.http, self.name, "GET", f"{qr_url}/payments",
                            timeout_seconds=self._timeout_seconds, headers=self._headers())
        if answer.status == 404:
            return unknown
        if answer.status != 200:
            raise refused(self.name, "payments", answer)
        for payment in decode(self.name, answer, _QrPayments).data:
            if payment.status.upper() in PAID_STATUSES:
                return TransactionStatus(trx_id, TransactionState.PAID,
                                         whole_rupiah(payment.amount), iso_to_ms(payment.created))
        answer = await call(self.http, self.name, "GET", qr_url,
                            timeout_seconds=self._timeout_seconds, headers=self._headers())
        if answer.status == 404:
            return unknown
        if answer.status != 200:
            raise refused(self.name, "get", answer)
        qr = decode(self.name, answer, _QrCode)
        expires_at_ms = iso_to_ms(qr.expires_at)
        still_payable = qr.status.upper() == "ACTIVE" and (
            expires_at_ms is None or self._clock() < expires_at_ms)
        state = TransactionState.PENDING if still_payable else TransactionState.EXPIRED
        return TransactionStatus(trx_id, state, whole_rupiah(qr.amount), None)


def _parse_event(raw_body: bytes) -> tuple[str, str, float, str, str | None]:
    """(payment id, QR id, amount, status, created) from either callback shape."""
    if too_deep(raw_body, PROVIDER_JSON_MAX_DEPTH):
        raise UnreadableNotification("JSON nested too deep")
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


def _iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
