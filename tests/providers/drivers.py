"""One driver per provider fake, so the whole-flow tests say once what every provider
must do: each driver plays its provider's side (create, pay, notify, fail) its way."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from aiohttp import web

from tests.conftest import FakeClock
from tests.providers.fake_midtrans import FakeMidtrans
from tests.providers.fake_otomatis import FakeOtomatis

Delivery = tuple[dict[str, str], bytes]


class Driver(Protocol):
    name: str
    credentials: dict[str, str]
    app: web.Application
    signs_notifications: bool  # False: the notification is only a hint (otomatis.vip)
    can_cancel: bool
    imposes_fees: bool

    def fail(self, mode: str | None) -> None:
        """Make the provider's API time out ("timeout"), answer 500 ("500"), answer
        garbage ("garbage") or a QR with a bad CRC ("invalid_qris"); None: heal it."""

    def asked(self, trx_id: str) -> tuple[int, str, int | None]:
        """What the create call sent: amount, our reference, expiry (ms) if any."""

    def pay(self, trx_id: str, *, paid_rupiah: int | None = None, fee: int = 0) -> None:
        """The payer pays (another amount, or with a fee imposed on top)."""

    def notification(self, trx_id: str) -> Delivery:
        """The callback the provider sends now for the transaction's current state."""

    def forged(self, trx_id: str, amount: int) -> Delivery:
        """A "paid" callback made by someone without the provider's keys."""

    def cancelled(self, trx_id: str) -> bool:
        """Whether our service ended the transaction at the provider."""


class MidtransDriver:
    name = "midtrans"
    credentials: ClassVar[dict[str, str]] = {
        "GATEWAY_MIDTRANS_SERVER_KEY": "SB-Mid-server-TEST0123456789"}
    signs_notifications = True
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

    def pay(self, trx_id: str, *, paid_rupiah: int | None = None, fee: int = 0) -> None:
        self.fake.settle(trx_id, paid_rupiah=paid_rupiah, imposed_fee=fee)

    def notification(self, trx_id: str) -> Delivery:
        return self.fake.notification(trx_id)

    def forged(self, trx_id: str, amount: int) -> Delivery:
        self.fake.settle(trx_id)
        headers, body = self.fake.notification(trx_id, server_key="guessed-server-key")
        self.fake.transactions[trx_id]["transaction_status"] = "pending"
        return headers, body

    def cancelled(self, trx_id: str) -> bool:
        return bool(self.fake.transactions[trx_id]["transaction_status"] == "expire")


class OtomatisDriver:
    name = "otomatis"
    credentials: ClassVar[dict[str, str]] = {
        "GATEWAY_OTOMATIS_USERNAME": "tokotonton",
        "GATEWAY_OTOMATIS_API_KEY": "5f0c8a1e-2b7d-4c39-9e61-0d4a8b2c7f13"}
    signs_notifications = False
    can_cancel = False
    imposes_fees = False

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.fake = FakeOtomatis(self.credentials["GATEWAY_OTOMATIS_USERNAME"],
                                 self.credentials["GATEWAY_OTOMATIS_API_KEY"], clock)
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

    def pay(self, trx_id: str, *, paid_rupiah: int | None = None, fee: int = 0) -> None:
        assert fee == 0, "otomatis.vip adds no fees"
        self.fake.pay(trx_id, paid_rupiah)

    def notification(self, trx_id: str) -> Delivery:
        return self.fake.callback(trx_id)

    def forged(self, trx_id: str, amount: int) -> Delivery:
        return self.fake.callback(trx_id, status="success", amount=amount, rrn="123456")

    def cancelled(self, trx_id: str) -> bool:
        return False  # it has no cancel API


DRIVERS: dict[str, type[Any]] = {"midtrans": MidtransDriver, "otomatis": OtomatisDriver}
