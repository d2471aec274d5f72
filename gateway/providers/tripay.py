"""Tripay, closed payment with a QRIS channel: one transaction per session.

Construct it as

    TripayProvider(api_key=settings GATEWAY_TRIPAY_API_KEY,
                   private_key=settings GATEWAY_TRIPAY_PRIVATE_KEY,
                   merchant_code=settings GATEWAY_TRIPAY_MERCHANT_CODE,
                   http=None (open() gives it the app's client), clock=app[CLOCK],
                   customer_email=settings tripay_customer_email,
                   base_url=GATEWAY_PROVIDER_URL or DEFAULT_BASE_URL,
                   method=GATEWAY_TRIPAY_METHOD,
                   callback_url=f"{GATEWAY_PUBLIC_URL}/api/payment-callback" or None)

(sandbox base URL: https://tripay.co.id/api-sandbox, with the sandbox merchant's keys).

- Create: `POST {base}/transaction/create`, `Authorization: Bearer <api key>`, body
  `{method: QRIS | QRIS2 | QRISC, merchant_ref: <our reference>, amount, customer_name,
  customer_email, order_items, expired_time: <end of our payment window, unix seconds>,
  callback_url?, signature}` where `signature = hex HMAC-SHA256(private_key,
  merchant_code + merchant_ref + amount)`. The trxId is the answer's `reference`.
  Without `callback_url` Tripay uses the merchant's default callback URL from its
  dashboard. `expired_time` is always sent: Tripay's default (24 h) is outside QRIS's
  10-60 minutes, and start-up makes sure our window fits the method's range.
- Customer: viewers are anonymous to us, and Tripay requires a name and a valid email.
  We send a fixed name and the merchant's own address (GATEWAY_TRIPAY_CUSTOMER_EMAIL,
  or no-reply@ the host of GATEWAY_PUBLIC_URL): Tripay's mails go to the merchant, and
  no viewer's data goes to Tripay.
- Fees: when the merchant makes the customer pay the fee (a dashboard setting), the
  answer's `amount` is the price plus `fee_customer` and `amount_received` the price:
  the QR asks for that sum, which is what is checked, and `fee_customer` is the
  session's `fee`. Otherwise `amount` is the price and the fee is the merchant's.
- The sandbox may answer `qr_string: "SANDBOX MODE"` instead of a QRIS: nothing a
  viewer could pay, so no session is sold on it (`provider_sandbox_qris`).
- Production refuses calls from addresses not on the merchant's IP whitelist (`403
  Unauthorized IP (...)`): logged with the fix.
- Callback: authentic when `X-Callback-Signature` is the hex HMAC-SHA256 of the raw body
  with the private key and `X-Callback-Event` is `payment_status`. It is also sent for
  FAILED, EXPIRED and REFUND (a refund made by hand in Tripay's dashboard: Tripay has no
  refund API). `total_amount` is what the customer paid, fees included; the price it
  paid for is `total_amount - fee_customer`, which Tripay's own books give as
  `amount_received + fee_merchant`. That is the notification's amount, so a
  fee-inflated or short payment is kept as an amount mismatch; every figure stays in
  the stored raw body. Tripay retries unless answered `{"success": true}`, also for
  duplicates.
- Status: `GET {base}/transaction/detail?reference=<trxId>`, its amounts read as the
  create answer's.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from typing import Annotated

import aiohttp
import msgspec
from msgspec import Meta

from gateway.clock import Clock
from gateway.errors import (
    NotificationRejected,
    ProviderReturnedInvalidQris,
    ProviderSandboxQris,
)
from gateway.logs import log_event
from gateway.model import REPORTED_PAID, REPORTED_REFUND_SUCCEEDED, Notification
from gateway.parsing import PROVIDER_JSON_MAX_DEPTH, too_deep
from gateway.providers.base import (
    CreatedQris,
    Provider,
    RefundReport,
    RefundStatus,
    TransactionState,
    TransactionStatus,
    UnreadableNotification,
)
from gateway.providers.http_api import (
    Answer,
    call,
    checked_qris,
    decode,
    log,
    rate_limited,
    refused,
)
from gateway.settings import API_ENVIRONMENTS

DEFAULT_BASE_URL = API_ENVIRONMENTS["tripay"].production_url
SIGNATURE_HEADER = "X-Callback-Signature"
EVENT_HEADER = "X-Callback-Event"
PAYMENT_STATUS_EVENT = "payment_status"
# What its sandbox may hand back where a QRIS payload should be.
SANDBOX_PLACEHOLDER = "SANDBOX MODE"

_STATES = {
    "UNPAID": TransactionState.PENDING,
    "PAID": TransactionState.PAID,
    "EXPIRED": TransactionState.EXPIRED,
    "FAILED": TransactionState.EXPIRED,
    # Money that went back to the payer buys nothing: as good as never paid.
    "REFUND": TransactionState.EXPIRED,
}

# What a callback's status is kept as; others keep Tripay's word (expired, failed).
_REPORTED = {"PAID": REPORTED_PAID, "REFUND": REPORTED_REFUND_SUCCEEDED}

_Reference = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
_Rupiah = Annotated[int, Meta(ge=0, le=10**12)]


class _Envelope(msgspec.Struct):
    success: bool
    message: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")


class _Transaction(msgspec.Struct):
    reference: _Reference
    amount: _Rupiah  # what the payer pays: the price, plus fee_customer when charged
    status: str
    fee_customer: _Rupiah = 0
    qr_string: str | None = None
    expired_time: int | None = None
    # The detail answer has it as a string of digits, the callback as a number.
    paid_at: int | str | None = None


class _Callback(msgspec.Struct):
    reference: _Reference
    status: str
    total_amount: _Rupiah
    fee_merchant: _Rupiah
    fee_customer: _Rupiah
    amount_received: int
    merchant_ref: str | None = None
    paid_at: int | str | None = None


class TripayProvider(Provider):
    name = "tripay"

    def __init__(self, api_key: str, private_key: str, merchant_code: str,
                 http: aiohttp.ClientSession | None, clock: Clock, *, customer_email: str,
                 base_url: str = DEFAULT_BASE_URL, callback_url: str | None = None,
                 method: str = "QRIS", customer_name: str = "Penonton",
                 item_name: str = "Tiket siaran langsung", timeout_seconds: float = 10.0) -> None:
        if not api_key or not private_key or not merchant_code:
            raise ValueError("Tripay needs an API key, a private key and a merchant code")
        self._api_key = api_key
        self._private_key = private_key.encode()
        self._merchant_code = merchant_code
        self._http = http  # or given later by open(), like every provider
        self._clock = clock
        self._base_url = base_url.rstrip("/")
        self.callback_url = callback_url  # the app sets it from GATEWAY_PUBLIC_URL
        self._method = method
        self._customer_name = customer_name
        self._customer_email = customer_email
        self._item_name = item_name
        self._timeout_seconds = timeout_seconds

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}

    def create_signature(self, merchant_ref: str, amount_rupiah: int) -> str:
        message = f"{self._merchant_code}{merchant_ref}{amount_rupiah}".encode()
        return hmac.new(self._private_key, message, hashlib.sha256).hexdigest()

    async def create_qris(
        self, reference: str, amount_rupiah: int, expires_at_ms: int
    ) -> CreatedQris:
        body: dict[str, object] = {
            "method": self._method,
            "merchant_ref": reference,
            "amount": amount_rupiah,
            # Tripay requires a customer; viewers are anonymous to us.
            "customer_name": self._customer_name,
            "customer_email": self._customer_email,
            "order_items": [{"name": self._item_name, "price": amount_rupiah, "quantity": 1}],
            "expired_time": expires_at_ms // 1000,
            "signature": self.create_signature(reference, amount_rupiah),
        }
        if self.callback_url:
            body["callback_url"] = self.callback_url
        answer = await call(self.http, self.name, "POST",
                            f"{self._base_url}/transaction/create",
                            timeout_seconds=self._timeout_seconds, json=body,
                            headers=self._headers())
        if answer.status == 429:
            raise rate_limited(self.name, "create", answer)
        transaction = self._transaction(answer)
        if transaction is None:
            raise refused(self.name, "create", answer)
        if transaction.qr_string is not None \
                and transaction.qr_string.strip().upper() == SANDBOX_PLACEHOLDER:
            log_event(log, "tripay_sandbox_without_qris", level=logging.ERROR,
                      trxId=transaction.reference, method=self._method,
                      fix="Tripay's sandbox gave no QRIS a viewer could pay, so nothing "
                          "was sold. The sandbox still proves the keys, the signature and "
                          "the callback URL; to sell, use the production keys with "
                          "GATEWAY_PROVIDER_URL unset (and the server on Tripay's IP "
                          "whitelist)")
            raise ProviderSandboxQris()
        price = transaction.amount - transaction.fee_customer
        if price != amount_rupiah or transaction.qr_string is None:
            log_event(log, "provider_transaction_mismatch", level=logging.ERROR,
                      provider=self.name, trxId=transaction.reference,
                      askedAmount=amount_rupiah, answeredAmount=transaction.amount,
                      feeCustomer=transaction.fee_customer,
                      hasQris=transaction.qr_string is not None)
            raise ProviderReturnedInvalidQris()
        # The payer is asked for `amount`: the price, and their fee when it is theirs.
        checked_qris(self.name, transaction.reference, transaction.qr_string,
                     transaction.amount)
        return CreatedQris(trx_id=transaction.reference, qr_string=transaction.qr_string,
                           fee=transaction.fee_customer)

    def _transaction(self, answer: Answer) -> _Transaction | None:
        """The `data` of a successful answer; None when Tripay said no (4xx, or 200 with
        `success: false`, which it also does)."""
        if answer.status >= 400:
            _explain_ip_refusal(answer)
            return None
        envelope = decode(self.name, answer, _Envelope)
        if not envelope.success:
            _explain_ip_refusal(answer)
            return None
        return decode(self.name, Answer(answer.status, bytes(envelope.data)), _Transaction)

    def callback_signature(self, raw_body: bytes) -> str:
        return hmac.new(self._private_key, raw_body, hashlib.sha256).hexdigest()

    def verify_notification(
        self, headers: Mapping[str, str], raw_body: bytes, received_at_ms: int
    ) -> Notification:
        signature = headers.get(SIGNATURE_HEADER)
        if not signature:
            raise NotificationRejected(reason="missing signature")
        expected = self.callback_signature(raw_body)
        if not hmac.compare_digest(signature.strip().lower().encode("utf-8", "replace"),
                                   expected.encode()):
            raise NotificationRejected(reason="bad signature")
        # The event header is not covered by the signature, so it is checked after it:
        # only an authentic payment_status callback is one we act on; another is kept.
        event = headers.get(EVENT_HEADER)
        if event != PAYMENT_STATUS_EVENT:
            raise UnreadableNotification(
                f"not a payment_status callback: {(event or '')[:40]!r}")
        if too_deep(raw_body, PROVIDER_JSON_MAX_DEPTH):
            raise UnreadableNotification("JSON nested too deep")
        try:
            callback = msgspec.json.decode(raw_body, type=_Callback)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise UnreadableNotification(str(exc)) from None
        status = callback.status.upper()
        paid_at_s = _unix_seconds(callback.paid_at)
        return Notification(
            provider=self.name,
            # Tripay has no event id: one transaction reaches each status once, and its
            # retries of that status are duplicates.
            event_id=f"{callback.reference}:{status}",
            trx_id=callback.reference,
            amount=_price_paid(callback),
            reported_status=_REPORTED.get(status, status.lower()),
            paid_at_ms=paid_at_s * 1000 if paid_at_s is not None else None,
            received_at_ms=received_at_ms,
            raw_body=raw_body.decode("utf-8", "replace"),
            # The signature is deterministic, so a retry carries the same one: a replay
            # key would refuse Tripay's own retries.
            replay_key=None,
            # What the customer paid on top of the price, kept beside it in the ledger.
            fee=callback.fee_customer,
        )

    async def _transaction_status(self, trx_id: str) -> TransactionStatus:
        unknown = TransactionStatus(trx_id, TransactionState.UNKNOWN, None, None)
        answer = await call(self.http, self.name, "GET",
                            f"{self._base_url}/transaction/detail",
                            timeout_seconds=self._timeout_seconds,
                            params={"reference": trx_id}, headers=self._headers())
        if answer.status in (400, 404):
            return unknown
        transaction = self._transaction(answer)
        if transaction is None:
            raise refused(self.name, "detail", answer)
        if transaction.reference != trx_id:
            return unknown
        state = _STATES.get(transaction.status.upper(), TransactionState.UNKNOWN)
        if (state == TransactionState.PENDING and transaction.expired_time is not None
                and self._clock() // 1000 >= transaction.expired_time):
            # Tripay marks expiry in its own time; past expired_time it can no longer be
            # paid, whatever the status still says.
            state = TransactionState.EXPIRED
        paid_at_s = _unix_seconds(transaction.paid_at)
        return TransactionStatus(
            trx_id, state, transaction.amount - transaction.fee_customer,
            paid_at_s * 1000 if state == TransactionState.PAID and paid_at_s else None,
            fee=transaction.fee_customer, raw_body=answer.raw.decode("utf-8", "replace"))

    def refund_reports(self, notification: Notification) -> list[RefundReport]:
        """A REFUND callback: a person refunded it by hand through Tripay."""
        if notification.reported_status != REPORTED_REFUND_SUCCEEDED:
            return []
        return [RefundReport(trx_id=notification.trx_id, status=RefundStatus.SUCCEEDED,
                             provider_refund_id=None, idempotency_key=None, payment_id=None,
                             amount_rupiah=notification.amount)]


def _explain_ip_refusal(answer: Answer) -> None:
    """Production answers every call from an address missing from the merchant's IP
    whitelist with `Unauthorized IP (<address>)`: say what to do about it."""
    text = answer.raw[:300].decode("utf-8", "replace")
    if "Unauthorized IP" in text:
        log_event(log, "tripay_ip_not_whitelisted", level=logging.ERROR, status=answer.status,
                  answer=text,
                  fix="add this server's outgoing IPv4 AND IPv6 addresses to Tripay's "
                      "Whitelist IP (merchant dashboard); the address Tripay saw is in the "
                      "answer")


def _price_paid(callback: _Callback) -> int:
    """The price this payment covers. Tripay's figures give it twice (what the customer
    paid less their fee; what the merchant got plus its own fee); when they disagree the
    smaller counts, so a payment is never worth more than both say."""
    from_customer = callback.total_amount - callback.fee_customer
    from_merchant = callback.amount_received + callback.fee_merchant
    return max(0, min(from_customer, from_merchant))


def _unix_seconds(value: int | str | None) -> int | None:
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isdigit() and len(value) <= 12:
        return int(value) or None
    return None
