"""One driver per provider fake, so the whole-flow tests say once what every provider
must do: each driver plays its provider's side (create, pay, notify, fail) its way."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, ClassVar, Protocol

from aiohttp import web

from tests.conftest import FakeClock
from tests.providers import harness
from tests.providers.fake_midtrans import FakeMidtrans
from tests.providers.fake_otomatis import FakeOtomatis
from tests.providers.fake_tripay import FakeTripay
from tests.providers.fake_xendit import FakeXendit

Delivery = tuple[dict[str, str], bytes]
DEEP = b"[" * 3000 + b"]" * 3000


def with_x(body: bytes, value: bytes) -> bytes:
    return body.rstrip()[:-1] + b',"x":' + value + b"}"


class Driver(Protocol):
    name: str
    credentials: dict[str, str]
    # Settings of its own beside the credentials (what from_env derives for it).
    settings: dict[str, Any]
    app: web.Application
    signs_notifications: bool  # False: the notification is only a hint (otomatis.vip)
    # Whether a notification is confirmed with the status API before it can pay: the
    # provider signs too little of it, or nothing (all but Tripay's HMAC of the body).
    confirms_notifications: bool
    can_cancel: bool
    imposes_fees: bool

    def fail(self, mode: str | None) -> None:
        """Make the provider's API time out ("timeout"), answer 500 ("500"), answer
        garbage ("garbage") or a QR with a bad CRC ("invalid_qris"); None: heal it."""

    def asked(self, trx_id: str) -> tuple[int, str, int | None]:
        """What the create call sent: amount, our reference, expiry (ms) if any."""

    def earlier_notification(self, trx_id: str) -> Delivery | None:
        """Before payment: a callback for another state (pending, expired) that can
        arrive after the payment's; None for providers that only notify payments."""

    def pay(self, trx_id: str, *, paid_rupiah: int | None = None) -> None:
        """The payer pays (another amount, to play a mismatch)."""

    def pay_with_fee(self, trx_id: str) -> int:
        """The payer pays the price plus a fee on top; returns that fee."""

    def notification(self, trx_id: str) -> Delivery:
        """The callback the provider sends now for the transaction's current state."""

    def forged(self, trx_id: str, amount: int) -> Delivery:
        """A "paid" callback made by someone without the provider's keys."""

    def unreadable(self, trx_id: str) -> Delivery | None:
        """An authentic callback (the provider's keys) that cannot be read as a payment:
        another event, or an amount out of shape; None for a provider that signs nothing."""

    def with_field(self, trx_id: str, value: bytes) -> Delivery:
        """The paid callback, authentic (the provider's keys), with a field `x` added
        whose JSON text is `value`, valid or not: for what no provider sends (a value
        nested 3,000 deep, say), which no decoder may be let fail on."""

    def cancelled(self, trx_id: str) -> bool:
        """Whether our service ended the transaction at the provider."""

    def callback_url_sent(self, trx_id: str) -> str | None:
        """The notification URL sent with the create call; None for providers that
        only take it from their dashboard."""

    def refund_notification(self, trx_id: str) -> Delivery | None:
        """After a refund (through the adapter, or by hand where there is no refund
        API), the provider's notification of it; None for a provider that sends none."""

    def fail_refunds(self, mode: str | None) -> None:
        """Make the refund call time out ("timeout") or answer 500 ("500"); None: heal."""

    def refunded_rupiah(self, trx_id: str) -> int:
        """What the provider has given back of the transaction, by API (0 without one)."""


class MidtransDriver:
    name = "midtrans"
    credentials: ClassVar[dict[str, str]] = {
        "GATEWAY_MIDTRANS_SERVER_KEY": "SB-Mid-server-TEST0123456789"}
    settings: ClassVar[dict[str, Any]] = {}
    signs_notifications = True
    confirms_notifications = True
    can_cancel = True
    imposes_fees = True

    def __init__(self, clock: FakeClock) -> None:
        self.fake = FakeMidtrans(self.credentials["GATEWAY_MIDTRANS_SERVER_KEY"], clock)
        self.app = self.fake.app

    def fail(self, mode: str | None) -> None:
        self.fake.failure = mode

    def charge_request(self, trx_id: str) -> dict[str, Any]:
        return next(body for method, path, _, body in self.fake.requests
                    if path == "/v2/charge"
                    and body["transaction_details"]["order_id"] == trx_id)

    def asked(self, trx_id: str) -> tuple[int, str, int | None]:
        from datetime import datetime

        body = self.charge_request(trx_id)
        expiry = body["custom_expiry"]
        start = datetime.strptime(expiry["order_time"], "%Y-%m-%d %H:%M:%S %z")
        assert expiry["unit"] == "minute"
        expires_ms = int(start.timestamp() * 1000) + expiry["expiry_duration"] * 60_000
        return (body["transaction_details"]["gross_amount"],
                body["transaction_details"]["order_id"], expires_ms)

    def earlier_notification(self, trx_id: str) -> Delivery | None:
        return self.fake.notification(trx_id)  # "pending", sent on creation

    def pay(self, trx_id: str, *, paid_rupiah: int | None = None) -> None:
        self.fake.settle(trx_id, paid_rupiah=paid_rupiah)

    def pay_with_fee(self, trx_id: str) -> int:
        self.fake.settle(trx_id, imposed_fee=71)  # Automatic Fee Imposition
        return 71

    def notification(self, trx_id: str) -> Delivery:
        return self.fake.notification(trx_id)

    def forged(self, trx_id: str, amount: int) -> Delivery:
        self.fake.settle(trx_id)
        headers, body = self.fake.notification(trx_id, server_key="guessed-server-key")
        self.fake.transactions[trx_id]["transaction_status"] = "pending"
        return headers, body

    def unreadable(self, trx_id: str) -> Delivery | None:
        transaction = self.fake.transactions[trx_id]
        before = dict(transaction)
        self.fake.settle(trx_id)
        transaction["gross_amount"] = "1000.50"  # no such rupiah: signed all the same
        delivery = self.fake.notification(trx_id)
        transaction.clear()
        transaction.update(before)
        return delivery

    def with_field(self, trx_id: str, value: bytes) -> Delivery:
        self.fake.settle(trx_id)
        headers, body = self.fake.notification(trx_id)
        return headers, with_x(body, value)  # its signature is over three fields only

    def cancelled(self, trx_id: str) -> bool:
        return bool(self.fake.transactions[trx_id]["transaction_status"] == "expire")

    def callback_url_sent(self, trx_id: str) -> str | None:
        return next(headers.get("X-Override-Notification")
                    for method, path, headers, body in self.fake.requests
                    if path == "/v2/charge"
                    and body["transaction_details"]["order_id"] == trx_id)

    def refund_notification(self, trx_id: str) -> Delivery | None:
        return self.fake.refund_notification(trx_id)

    def fail_refunds(self, mode: str | None) -> None:
        self.fake.failure = mode

    def refunded_rupiah(self, trx_id: str) -> int:
        return sum(int(float(entry["refund_amount"]))
                   for entry in self.fake.transactions[trx_id].get("refunds", []))


class OtomatisDriver:
    name = "otomatis"
    credentials: ClassVar[dict[str, str]] = {
        "GATEWAY_OTOMATIS_USERNAME": "tokotonton",
        "GATEWAY_OTOMATIS_API_KEY": "5f0c8a1e-2b7d-4c39-9e61-0d4a8b2c7f13",
        "GATEWAY_OTOMATIS_CLIENT": "toko-tonton",
        "GATEWAY_OTOMATIS_CLIENT_KEY": "ck-3b9e1f0a7c5d2e8f"}
    settings: ClassVar[dict[str, Any]] = {}
    signs_notifications = False
    confirms_notifications = True
    can_cancel = False
    imposes_fees = False

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.fake = FakeOtomatis(*(self.credentials[name] for name in (
            "GATEWAY_OTOMATIS_USERNAME", "GATEWAY_OTOMATIS_API_KEY",
            "GATEWAY_OTOMATIS_CLIENT", "GATEWAY_OTOMATIS_CLIENT_KEY")), clock)
        self.app = self.fake.app

    def fail(self, mode: str | None) -> None:
        self.fake.failure = mode

    def asked(self, trx_id: str) -> tuple[int, str, int | None]:
        import base64

        transaction = self.fake.transactions[trx_id]
        body = next(body for path, body in self.fake.requests
                    if path == "/api/generate" and body["custom_ref"] == transaction["custom_ref"])
        # Our reference goes as 32 hex digits (its custom_ref takes only A-Z and 0-9).
        reference = base64.urlsafe_b64encode(bytes.fromhex(body["custom_ref"])).decode()
        return body["amount"], reference.rstrip("="), self.clock() + body["expire"] * 1000

    def earlier_notification(self, trx_id: str) -> Delivery | None:
        return self.fake.callback(trx_id)  # "pending"

    def pay(self, trx_id: str, *, paid_rupiah: int | None = None) -> None:
        self.fake.pay(trx_id, paid_rupiah)

    def pay_with_fee(self, trx_id: str) -> int:
        raise AssertionError("otomatis.vip adds no fees")

    def notification(self, trx_id: str) -> Delivery:
        return self.fake.callback(trx_id)

    def forged(self, trx_id: str, amount: int) -> Delivery:
        return self.fake.callback(trx_id, status="success", amount=amount, rrn="123456")

    def unreadable(self, trx_id: str) -> Delivery | None:
        return None  # signs nothing: every callback is only a hint

    def with_field(self, trx_id: str, value: bytes) -> Delivery:
        self.pay(trx_id)
        headers, body = self.notification(trx_id)
        return headers, with_x(body, value)

    def cancelled(self, trx_id: str) -> bool:
        return False  # it has no cancel API

    def callback_url_sent(self, trx_id: str) -> str | None:
        return None  # set in its member area

    def refund_notification(self, trx_id: str) -> Delivery | None:
        return None  # no refund API, no refund callback

    def fail_refunds(self, mode: str | None) -> None:
        self.fail(mode)

    def refunded_rupiah(self, trx_id: str) -> int:
        return 0  # no refund API


def _iso_ms(value: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(value).timestamp() * 1000)


class XenditDriver:
    name = "xendit"
    credentials: ClassVar[dict[str, str]] = {
        "GATEWAY_XENDIT_SECRET_KEY": "xnd_development_TEST0123456789",
        "GATEWAY_XENDIT_CALLBACK_TOKEN": "xendit-callback-verification-token"}
    settings: ClassVar[dict[str, Any]] = {}
    signs_notifications = True
    confirms_notifications = True
    can_cancel = False
    imposes_fees = False

    def __init__(self, clock: FakeClock) -> None:
        self.fake = FakeXendit(self.credentials["GATEWAY_XENDIT_SECRET_KEY"],
                               self.credentials["GATEWAY_XENDIT_CALLBACK_TOKEN"], clock)
        self.app = self.fake.app()
        self.callbacks: dict[str, bytes] = {}

    def fail(self, mode: str | None) -> None:
        _fail(self.fake, mode)

    def asked(self, trx_id: str) -> tuple[int, str, int | None]:
        reference = self.fake.qr_codes[trx_id]["reference_id"]
        body = next(r["body"] for r in self.fake.create_requests
                    if r["body"]["reference_id"] == reference)
        return body["amount"], reference, _iso_ms(body["expires_at"])

    def earlier_notification(self, trx_id: str) -> Delivery | None:
        return None  # Xendit calls back on successful payments only

    def pay(self, trx_id: str, *, paid_rupiah: int | None = None) -> None:
        self.callbacks[trx_id] = self.fake.payment_callback(trx_id, paid_rupiah)

    def pay_with_fee(self, trx_id: str) -> int:
        raise AssertionError("Xendit asks the payer for the QR's amount only")

    def notification(self, trx_id: str) -> Delivery:
        return self._signed(self.callbacks[trx_id], self.fake.callback_token)

    def forged(self, trx_id: str, amount: int) -> Delivery:
        body = self.fake.payment_callback(trx_id, amount)
        self.fake.payments[trx_id].pop()  # claimed, never paid
        return self._signed(body, "guessed-token")

    def unreadable(self, trx_id: str) -> Delivery | None:
        body = json.dumps({"event": "qr.expired", "business_id": "5f27a14a9bf05c73dd040bc8",
                           "created": "2026-11-29T10:00:00.000Z",
                           "data": {"id": trx_id, "status": "INACTIVE"}}).encode()
        return self._signed(body, self.fake.callback_token)

    def with_field(self, trx_id: str, value: bytes) -> Delivery:
        self.pay(trx_id)
        headers, body = self.notification(trx_id)
        return headers, with_x(body, value)  # the token is a header

    @staticmethod
    def _signed(body: bytes, token: str) -> Delivery:
        return {"Content-Type": "application/json", "x-callback-token": token}, body

    def cancelled(self, trx_id: str) -> bool:
        return False  # the QR Codes API has no cancel: its expires_at ends it

    def callback_url_sent(self, trx_id: str) -> str | None:
        return None  # this API version takes it from the dashboard only

    def refund_notification(self, trx_id: str) -> Delivery | None:
        return self._signed(self.fake.finish_refunds()[-1], self.fake.callback_token)

    def fail_refunds(self, mode: str | None) -> None:
        self.fake.refund_failure = mode

    def refunded_rupiah(self, trx_id: str) -> int:
        payments = {payment["id"] for payment in self.fake.payments.get(trx_id, [])}
        return sum(int(refund["refund_amount"]) for refund in self.fake.refunds.values()
                   if refund["qrpy_id"] in payments and refund["status"] != "FAILED")


class TripayDriver:
    name = "tripay"
    credentials: ClassVar[dict[str, str]] = {
        "GATEWAY_TRIPAY_API_KEY": "DEV-TEST0123456789",
        "GATEWAY_TRIPAY_PRIVATE_KEY": "tripay-private-key-TEST",
        "GATEWAY_TRIPAY_MERCHANT_CODE": "T12345"}
    settings: ClassVar[dict[str, Any]] = {
        "tripay_customer_email": "no-reply@tonton.example.id"}
    signs_notifications = True
    confirms_notifications = False  # its HMAC covers the whole body
    can_cancel = False
    imposes_fees = True

    def __init__(self, clock: FakeClock) -> None:
        self.fake = FakeTripay(self.credentials["GATEWAY_TRIPAY_API_KEY"],
                               self.credentials["GATEWAY_TRIPAY_PRIVATE_KEY"],
                               self.credentials["GATEWAY_TRIPAY_MERCHANT_CODE"], clock)
        # The merchant charges the fee to the customer: every QR asks price + fee.
        self.fake.customer_pays_fee = True
        self.app = self.fake.app()
        self.callbacks: dict[str, bytes] = {}

    def fail(self, mode: str | None) -> None:
        _fail(self.fake, mode)

    def asked(self, trx_id: str) -> tuple[int, str, int | None]:
        reference = self.fake.transactions[trx_id]["merchant_ref"]
        body = next(r["body"] for r in self.fake.create_requests
                    if r["body"]["merchant_ref"] == reference)
        return body["amount"], reference, body["expired_time"] * 1000

    def _callback(self, trx_id: str, status: str, total: int | None = None) -> bytes:
        transaction = self.fake.transactions[trx_id]
        before = dict(transaction)
        body = self.fake.payment_callback(trx_id, total_amount=total, status=status)
        if status != "PAID":
            transaction.clear()
            transaction.update(before)
        return body

    def earlier_notification(self, trx_id: str) -> Delivery | None:
        return self._signed(self._callback(trx_id, "EXPIRED"))

    def pay(self, trx_id: str, *, paid_rupiah: int | None = None) -> None:
        fee = self.fake.transactions[trx_id]["fee_customer"]
        total = None if paid_rupiah is None else paid_rupiah + fee
        self.callbacks[trx_id] = self._callback(trx_id, "PAID", total)

    def pay_with_fee(self, trx_id: str) -> int:
        self.pay(trx_id)
        return int(self.fake.transactions[trx_id]["fee_customer"])

    def notification(self, trx_id: str) -> Delivery:
        return self._signed(self.callbacks[trx_id])

    def forged(self, trx_id: str, amount: int) -> Delivery:
        transaction = self.fake.transactions[trx_id]
        before = dict(transaction)
        body = self.fake.payment_callback(trx_id)
        transaction.clear()
        transaction.update(before)
        return self._signed(body, "guessed-private-key")

    def unreadable(self, trx_id: str) -> Delivery | None:
        headers, body = self._signed(self._callback(trx_id, "PAID"))
        del headers["X-Callback-Event"]  # not signed; the body is
        return headers, body

    def with_field(self, trx_id: str, value: bytes) -> Delivery:
        return self._signed(with_x(self._callback(trx_id, "PAID"), value))

    def _signed(self, body: bytes, key: str | None = None) -> Delivery:
        signature = hmac.new((key or self.fake.private_key).encode(), body,
                             hashlib.sha256).hexdigest()
        return {"Content-Type": "application/json", "X-Callback-Event": "payment_status",
                "X-Callback-Signature": signature}, body

    def cancelled(self, trx_id: str) -> bool:
        return False  # closed payments cannot be cancelled: expired_time ends them

    def callback_url_sent(self, trx_id: str) -> str | None:
        url = self.fake.transactions[trx_id]["callback_url"]
        return str(url) if url is not None else None

    def refund_notification(self, trx_id: str) -> Delivery | None:
        return self._signed(self._callback(trx_id, "REFUND"))  # refunded by hand

    def fail_refunds(self, mode: str | None) -> None:
        self.fail(mode)

    def refunded_rupiah(self, trx_id: str) -> int:
        return 0  # no refund API


def _fail(fake: FakeXendit | FakeTripay, mode: str | None) -> None:
    if mode is None:
        fake.failure = fake.status_failure = None
        fake.hang.release()  # a create call left hanging by "timeout" may finish now
    elif mode == "500":
        fake.failure = fake.status_failure = harness.SERVER_ERROR
    else:
        fake.failure = mode


DRIVERS: dict[str, type[Any]] = {"midtrans": MidtransDriver, "otomatis": OtomatisDriver,
                                 "xendit": XenditDriver, "tripay": TripayDriver}
