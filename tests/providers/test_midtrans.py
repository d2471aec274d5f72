"""Midtrans specifics the whole-flow tests do not reach: the signature over the body's
own strings, what counts as paid, fee imposition without its metadata, the notification
URL and the acquirer sent per transaction, the status API's confirmation of what the
signature does not cover, and refunds (its direct refund API and its notifications)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from gateway.errors import NotificationRejected
from gateway.model import REPORTED_REFUND_SUCCEEDED, UNCONFIRMED_STATUS, new_session_id
from gateway.providers.base import RefundRequest, RefundStatus
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


# Against the local Midtrans, over real HTTP.
PRICE = 25000
WINDOW_MS = 1200 * 1000

World = tuple[FakeMidtrans, MidtransProvider]


@pytest.fixture
async def world(aiohttp_server: Any, clock: FakeClock, http: aiohttp.ClientSession) -> World:
    fake = FakeMidtrans(KEY, clock)
    fake.delay_s = 1.0
    server = await aiohttp_server(fake.app)
    fake.base_url = str(server.make_url("")).rstrip("/")
    provider = MidtransProvider(KEY, clock, base_url=fake.base_url, timeout_s=0.5)
    await provider.open(http)
    return fake, provider


async def paid_order(world: World, clock: FakeClock, **settle: Any) -> str:
    fake, provider = world
    order_id = new_session_id()
    await provider.create_qris(order_id, PRICE, clock() + WINDOW_MS)
    fake.settle(order_id, **settle)
    return order_id


@pytest.mark.parametrize("acquirer", ["gopay", "airpay shopee"])
async def test_the_acquirer_goes_with_each_charge(
        aiohttp_server: Any, clock: FakeClock, http: aiohttp.ClientSession,
        acquirer: str) -> None:
    fake = FakeMidtrans(KEY, clock)
    server = await aiohttp_server(fake.app)
    provider = MidtransProvider(KEY, clock, base_url=str(server.make_url("")),
                                acquirer=acquirer)
    await provider.open(http)
    await provider.create_qris("order-1", PRICE, clock() + WINDOW_MS)
    [(_, _, _, body)] = fake.requests
    assert body["qris"] == {"acquirer": acquirer}
    with pytest.raises(ValueError):
        MidtransProvider(KEY, clock, acquirer="shopeepay")


async def test_a_signed_payment_is_recorded_as_the_status_api_confirms_it(
        world: World, clock: FakeClock) -> None:
    fake, provider = world
    order_id = await paid_order(world, clock, imposed_fee=71)
    _, body = fake.notification(order_id)
    note = await provider.authenticate({}, body, clock())
    assert (note.reported_status, note.amount, note.fee) == ("paid", PRICE, 71)
    kept = json.loads(note.raw_body)
    assert kept["notification"] == body.decode()
    assert json.loads(kept["status"])["transaction_status"] == "settlement"
    assert ("GET", f"/v2/{order_id}/status") in [(m, p) for m, p, _, _ in fake.requests]


async def test_a_signed_cancel_rewritten_to_settlement_pays_nothing(
        world: World, clock: FakeClock) -> None:
    """The signature covers order_id, status_code and gross_amount only: a cancel
    (status_code 200 as well) can be made to say "settlement" without breaking it."""
    fake, provider = world
    order_id = new_session_id()
    await provider.create_qris(order_id, PRICE, clock() + WINDOW_MS)
    fake.transactions[order_id]["transaction_status"] = "cancel"
    _, body = fake.notification(order_id)
    altered = json.loads(body)
    altered.update(transaction_status="settlement", settlement_time="2027-01-15 15:00:00")
    assert provider.verify_notification({}, json.dumps(altered).encode(),
                                        clock()).reported_status == "paid"  # as signed
    note = await provider.authenticate({}, json.dumps(altered).encode(), clock())
    assert (note.reported_status, note.event_id) == (
        "cancel", f"{fake.transactions[order_id]['transaction_id']}:cancel")


async def test_a_paid_notification_replayed_for_another_order_is_refused(
        world: World, clock: FakeClock) -> None:
    fake, provider = world
    order_id = await paid_order(world, clock)
    _, body = fake.notification(order_id)
    other = json.loads(body) | {"order_id": "someone-elses-order"}
    with pytest.raises(NotificationRejected):
        await provider.authenticate({}, json.dumps(other).encode(), clock())


@pytest.mark.parametrize("failure", ["500", "timeout", "garbage"])
async def test_a_payment_midtrans_cannot_confirm_now_is_kept_unconfirmed(
        world: World, clock: FakeClock, failure: str) -> None:
    fake, provider = world
    order_id = await paid_order(world, clock)
    _, body = fake.notification(order_id)
    fake.failure = failure
    note = await provider.authenticate({}, body, clock())
    assert (note.reported_status, note.amount) == (UNCONFIRMED_STATUS, PRICE)
    transaction_id = fake.transactions[order_id]["transaction_id"]
    assert note.event_id == f"unconfirmed:{transaction_id}:settlement"
    fake.failure = None  # Midtrans' next delivery of it is confirmed and counts
    assert (await provider.authenticate({}, body, clock())).reported_status == "paid"


async def test_notifications_that_grant_nothing_are_not_confirmed(
        world: World, clock: FakeClock) -> None:
    fake, provider = world
    order_id = new_session_id()
    await provider.create_qris(order_id, PRICE, clock() + WINDOW_MS)
    _, body = fake.notification(order_id)  # pending
    fake.failure = "500"
    assert (await provider.authenticate({}, body, clock())).reported_status == "pending"


def refund_of(order_id: str, amount: int = PRICE, key: str = "rf-order-0001"
              ) -> RefundRequest:
    return RefundRequest(order_id, amount, "Show cancelled", key)


async def test_a_refund_is_made_once_per_refund_key(world: World, clock: FakeClock) -> None:
    fake, provider = world
    assert provider.refunds_by_api
    order_id = await paid_order(world, clock)
    outcome = await provider.refund(refund_of(order_id, 10_000))
    assert (outcome.status, outcome.provider_refund_id) == (RefundStatus.SUCCEEDED, "1")
    [(_, path, _, sent)] = [r for r in fake.requests if "refund" in r[1]]
    assert path == f"/v2/{order_id}/refund/online/direct"
    assert sent == {"refund_key": "rf-order-0001", "amount": 10_000,
                    "reason": "Show cancelled"}
    for variant in ("duplicate", "idempotent"):  # the sources disagree: both are met
        fake.repeated_refund_key = variant
        again = await provider.refund(refund_of(order_id, 10_000))
        assert (again.status, again.provider_refund_id) == (RefundStatus.SUCCEEDED, "1")
    assert fake.transactions[order_id]["refund_amount"] == "10000.00"
    second = await provider.refund(refund_of(order_id, 15_000, key="rf-order-0002"))
    assert second.status == RefundStatus.SUCCEEDED
    assert fake.transactions[order_id]["transaction_status"] == "refund"


@pytest.mark.parametrize(("prepare", "amount", "code"), [
    ("unpaid", PRICE, "412"),
    ("paid", PRICE + 1, "414"),
    ("denied", PRICE, "202"),
    ("unknown", PRICE, "404"),
])
async def test_a_refused_refund_is_failed_with_midtrans_code(
        world: World, clock: FakeClock, prepare: str, amount: int, code: str) -> None:
    fake, provider = world
    order_id = new_session_id()
    if prepare != "unknown":
        await provider.create_qris(order_id, PRICE, clock() + WINDOW_MS)
    if prepare in ("paid", "denied"):
        fake.settle(order_id)
    fake.deny_refunds = prepare == "denied"
    outcome = await provider.refund(refund_of(order_id, amount))
    assert (outcome.status, outcome.failure_code) == (RefundStatus.FAILED, code)
    assert json.loads(outcome.raw_body)["status_code"] == code
    if prepare == "denied":  # a denied key may be tried again, and go through
        fake.deny_refunds = False
        assert (await provider.refund(refund_of(order_id))).status == RefundStatus.SUCCEEDED


async def test_a_wrong_server_key_fails_a_refund(world: World, clock: FakeClock,
                                                 http: aiohttp.ClientSession) -> None:
    fake, _ = world
    order_id = await paid_order(world, clock)
    wrong = MidtransProvider("SB-Mid-server-WRONG", clock, base_url=fake.base_url)
    await wrong.open(http)
    outcome = await wrong.refund(refund_of(order_id))
    assert (outcome.status, outcome.failure_code) == (RefundStatus.FAILED, "401")


async def test_a_refund_whose_answer_is_lost_is_unknown_then_found_by_its_key(
        world: World, clock: FakeClock) -> None:
    fake, provider = world
    order_id = await paid_order(world, clock)
    fake.refund_answer_lost = True
    lost = await provider.refund(refund_of(order_id))
    assert lost.status == RefundStatus.UNKNOWN  # it may have gone through: ask again
    fake.refund_answer_lost = False
    again = await provider.refund(refund_of(order_id))  # the SAME key: 406, then status
    assert (again.status, again.provider_refund_id) == (RefundStatus.SUCCEEDED, "1")
    assert len(fake.transactions[order_id]["refunds"]) == 1  # paid out once
    fake.failure = "500"
    assert (await provider.refund(refund_of(order_id, key="rf-order-0003"))).status == (
        RefundStatus.UNKNOWN)


@pytest.mark.parametrize("bare", [False, True], ids=["with refunds", "bare"])
async def test_a_refund_notification_is_confirmed_and_reported(
        world: World, clock: FakeClock, bare: bool) -> None:
    fake, provider = world
    order_id = await paid_order(world, clock)
    await provider.refund(refund_of(order_id, 10_000))
    await provider.refund(refund_of(order_id, 5_000, key="rf-order-0002"))
    _, body = fake.refund_notification(order_id, bare=bare)
    note = await provider.authenticate({}, body, clock())
    assert (note.reported_status, note.amount) == (REPORTED_REFUND_SUCCEEDED, 5_000)
    transaction_id = fake.transactions[order_id]["transaction_id"]
    assert note.event_id == f"{transaction_id}:partial_refund:15000"
    reports = provider.refund_reports(note)
    assert [(r.idempotency_key, r.provider_refund_id, r.amount_rupiah, r.status)
            for r in reports] == [("rf-order-0001", "1", 10_000, RefundStatus.SUCCEEDED),
                                  ("rf-order-0002", "2", 5_000, RefundStatus.SUCCEEDED)]
    # Its second notification, once the bank confirms: the same event.
    _, confirmed = fake.refund_notification(order_id, bank_confirmed=True)
    assert (await provider.authenticate({}, confirmed, clock())).event_id == note.event_id


async def test_a_settlement_rewritten_to_a_refund_reports_no_refund(
        world: World, clock: FakeClock) -> None:
    fake, provider = world
    order_id = await paid_order(world, clock)
    _, body = fake.notification(order_id)
    altered = json.loads(body) | {"transaction_status": "refund"}
    note = await provider.authenticate({}, json.dumps(altered).encode(), clock())
    assert note.reported_status == "paid" and provider.refund_reports(note) == []


async def test_a_refund_notification_midtrans_cannot_confirm_is_kept_unconfirmed(
        world: World, clock: FakeClock) -> None:
    fake, provider = world
    order_id = await paid_order(world, clock)
    await provider.refund(refund_of(order_id))
    _, body = fake.refund_notification(order_id)
    fake.failure = "500"
    note = await provider.authenticate({}, body, clock())
    assert note.reported_status == UNCONFIRMED_STATUS
    assert provider.refund_reports(note) == []
