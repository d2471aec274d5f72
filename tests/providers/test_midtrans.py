"""Midtrans specifics the whole-flow tests do not reach: the signature over the body's
own strings, what counts as paid, fee imposition without its metadata, and the
notification URL sent per transaction."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest

from gateway.errors import NotificationRejected
from gateway.providers.midtrans import MidtransProvider
from gateway.settings import Settings
from tests.conftest import START_MS, AppFactory, FakeClock
from tests.providers.fake_midtrans import FakeMidtrans

KEY = "SB-Mid-server-UNIT"


def signed(body: dict[str, Any], key: str = KEY) -> bytes:
    text = body["order_id"] + body["status_code"] + body["gross_amount"] + key
    return json.dumps({**body, "signature_key": hashlib.sha512(text.encode()).hexdigest()
                       }).encode()


def notification(**fields: Any) -> dict[str, Any]:
    return {"order_id": "order-1", "status_code": "200", "gross_amount": "1000.00",
            "transaction_status": "settlement", "fraud_status": "accept",
            "transaction_id": "0a1b", "settlement_time": "2027-01-15 15:00:00", **fields}


@pytest.fixture
def midtrans(clock: FakeClock) -> MidtransProvider:
    return MidtransProvider(KEY, clock)


def test_paid_is_settlement_or_capture_with_fraud_accept(midtrans: MidtransProvider) -> None:
    for status in ("settlement", "capture"):
        note = midtrans.verify_notification({}, signed(notification(transaction_status=status)),
                                            START_MS)
        assert (note.reported_status, note.amount, note.trx_id) == ("paid", 1000, "order-1")
    for fields in ({"fraud_status": "deny"}, {"fraud_status": "challenge"},
                   {"transaction_status": "pending", "status_code": "201"},
                   {"transaction_status": "expire", "status_code": "407"}):
        note = midtrans.verify_notification({}, signed(notification(**fields)), START_MS)
        assert note.reported_status != "paid", fields


def test_the_signature_covers_the_body_s_own_strings(midtrans: MidtransProvider) -> None:
    body = notification()
    # Signed over "1000" while the body says "1000.00": what a re-serialising sender does.
    text = body["order_id"] + body["status_code"] + "1000" + KEY
    forged = json.dumps({**body, "signature_key": hashlib.sha512(text.encode()).hexdigest()})
    with pytest.raises(NotificationRejected):
        midtrans.verify_notification({}, forged.encode(), START_MS)
    with pytest.raises(NotificationRejected):
        midtrans.verify_notification({}, signed(notification(), key="other"), START_MS)
    with pytest.raises(NotificationRejected):
        midtrans.verify_notification({}, b"not json", START_MS)


def test_settlement_time_is_read_as_western_indonesia_time(midtrans: MidtransProvider) -> None:
    note = midtrans.verify_notification({}, signed(notification()), START_MS)
    assert note.paid_at_ms == START_MS  # 2027-01-15 08:00:00 UTC


def test_an_imposed_fee_without_its_metadata_is_a_different_amount(
        midtrans: MidtransProvider) -> None:
    note = midtrans.verify_notification({}, signed(notification(gross_amount="1071.00")),
                                        START_MS)
    assert (note.amount, note.fee) == (1071, 0)
    info = {"extra_info": {"gross_amount_info": {
        "original_amount": "1000", "gross_amount": "1071",
        "customer_imposed_payment_fee": "71"}}}
    note = midtrans.verify_notification(
        {}, signed(notification(gross_amount="1071.00", metadata=info)), START_MS)
    assert (note.amount, note.fee) == (1000, 71)


async def test_the_notification_url_goes_with_each_charge(
        aiohttp_server: Any, settings: Settings, clock: FakeClock,
        make_viewer: AppFactory) -> None:
    fake = FakeMidtrans(KEY, clock)
    server = await aiohttp_server(fake.app)
    viewer = await make_viewer(replace(
        settings, provider="midtrans", provider_url=str(server.make_url("")).rstrip("/"),
        provider_credentials={"GATEWAY_MIDTRANS_SERVER_KEY": KEY},
        public_url="https://tonton.example.id"))
    qr = await viewer.generate_qris()
    [(_, path, headers, body)] = fake.requests
    assert path == "/v2/charge" and body["payment_type"] == "qris"
    assert body["transaction_details"] == {"order_id": qr["trxId"], "gross_amount": 1000}
    assert headers["X-Override-Notification"] == (
        "https://tonton.example.id/api/payment-callback")
