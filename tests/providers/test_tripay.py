"""The Tripay adapter against a local Tripay over real HTTP: a signed create call with
our reference, price, window and method; a valid QRIS for what the payer owes, in both
fee modes; only callbacks signed over their raw bytes count, and their amounts say what
price was paid; the detail API is read right; the sandbox's placeholder and the IP
whitelist's refusal are explained; every way Tripay can fail becomes a clean provider
error; refunds are a person's task."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import aiohttp
import pytest

from gateway import qris
from gateway.errors import (
    ProviderBadResponse,
    ProviderReturnedInvalidQris,
    ProviderSandboxQris,
    ProviderUnavailable,
)
from gateway.model import REPORTED_REFUND_SUCCEEDED, UNREADABLE_STATUS
from gateway.providers.base import RefundRequest, RefundStatus, TransactionState
from gateway.providers.tripay import TripayProvider
from tests.conftest import FakeClock
from tests.providers import harness
from tests.providers.fake_tripay import SUCCESS_FALSE, FakeTripay, qris_fee

API_KEY = "DEV-" + "a" * 40
PRIVATE_KEY = "pk-" + "b" * 30
MERCHANT_CODE = "T12345"
PRICE = 25000
WINDOW_MS = 1200 * 1000
CALLBACK_URL = "https://tonton.example.id/api/payment-callback"
CUSTOMER_EMAIL = "no-reply@tonton.example.id"


@pytest.fixture
async def fake(clock: FakeClock, serve_fake: harness.ServeFake) -> FakeTripay:
    fake = FakeTripay(API_KEY, PRIVATE_KEY, MERCHANT_CODE, clock)
    await serve_fake(fake)
    return fake


def adapter(fake: FakeTripay, http: aiohttp.ClientSession, clock: FakeClock,
            **overrides: Any) -> TripayProvider:
    options: dict[str, Any] = {"api_key": API_KEY, "private_key": PRIVATE_KEY,
                               "merchant_code": MERCHANT_CODE, "http": http, "clock": clock,
                               "base_url": fake.base_url, "customer_email": CUSTOMER_EMAIL}
    options.update(overrides)
    return TripayProvider(**options)


@pytest.fixture
def tripay(fake: FakeTripay, http: aiohttp.ClientSession, clock: FakeClock) -> TripayProvider:
    return adapter(fake, http, clock)


@pytest.fixture
async def receiver(tripay: TripayProvider,
                   serve_receiver: harness.ServeReceiver) -> harness.Receiver:
    return await serve_receiver(tripay)


def hmac_hex(key: str, message: bytes) -> str:
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


async def test_create_is_signed_and_asks_for_our_reference_price_and_window(
        fake: FakeTripay, http: aiohttp.ClientSession, clock: FakeClock) -> None:
    tripay = adapter(fake, http, clock, callback_url=CALLBACK_URL)
    expires_at_ms = clock() + WINDOW_MS
    created = await tripay.create_qris("sess-abc", PRICE, expires_at_ms)

    assert created.trx_id.startswith("T") and created.fee == 0
    assert qris.problems(created.qr_string) == []
    parsed = qris.parse(created.qr_string)
    assert parsed.is_dynamic and parsed.amount == PRICE
    sent = fake.create_requests[-1]
    body = sent["body"]
    assert (body["method"], body["merchant_ref"], body["amount"], body["expired_time"]) == (
        "QRIS", "sess-abc", PRICE, expires_at_ms // 1000)
    assert body["signature"] == hmac_hex(PRIVATE_KEY, f"{MERCHANT_CODE}sess-abc{PRICE}".encode())
    assert body["callback_url"] == CALLBACK_URL
    assert sent["headers"]["Authorization"] == f"Bearer {API_KEY}"
    # Nobody's personal data: a fixed name, the merchant's own address.
    assert (body["customer_name"], body["customer_email"]) == ("Penonton", CUSTOMER_EMAIL)


@pytest.mark.parametrize(("method", "window_minutes"), [("QRIS2", 1440), ("QRISC", 180)])
async def test_the_method_is_sent_and_its_longer_expiry_accepted(
        fake: FakeTripay, http: aiohttp.ClientSession, clock: FakeClock, method: str,
        window_minutes: int) -> None:
    expires_at_ms = clock() + window_minutes * 60_000
    created = await adapter(fake, http, clock, method=method).create_qris(
        "sess-abc", PRICE, expires_at_ms)
    body = fake.create_requests[-1]["body"]
    assert (body["method"], body["expired_time"]) == (method, expires_at_ms // 1000)
    assert fake.transactions[created.trx_id]["payment_method"] == method


async def test_a_customer_email_tripay_calls_invalid_is_a_provider_error(
        fake: FakeTripay, http: aiohttp.ClientSession, clock: FakeClock) -> None:
    with pytest.raises(ProviderBadResponse):
        await adapter(fake, http, clock, customer_email="penonton").create_qris(
            "sess-abc", PRICE, clock() + WINDOW_MS)


async def test_without_a_callback_url_tripay_uses_the_dashboards(
        tripay: TripayProvider, fake: FakeTripay, clock: FakeClock) -> None:
    await tripay.create_qris("sess-abc", PRICE, clock() + WINDOW_MS)
    assert "callback_url" not in fake.create_requests[-1]["body"]


@pytest.mark.parametrize(("price", "payable"), [(100_000, 101_450), (61_800, 62_983)])
async def test_when_the_payer_pays_the_fee_the_qr_asks_for_it_and_it_is_the_sessions_fee(
        tripay: TripayProvider, fake: FakeTripay, clock: FakeClock, price: int,
        payable: int) -> None:
    """The two public sandbox answers: Tripay's `amount` is then price + fee_customer,
    which used to be refused as an invalid QRIS (every sale a 502)."""
    fake.customer_pays_fee = True
    created = await tripay.create_qris("sess-1", price, clock() + WINDOW_MS)
    answered = fake.transactions[created.trx_id]
    assert (answered["amount"], answered["amount_received"]) == (payable, price)
    assert created.fee == qris_fee(price) == payable - price
    assert qris.parse(created.qr_string).amount == payable


async def test_when_the_merchant_pays_the_fee_the_qr_asks_for_the_price(
        tripay: TripayProvider, fake: FakeTripay, clock: FakeClock) -> None:
    created = await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    answered = fake.transactions[created.trx_id]
    assert (answered["amount"], answered["fee_merchant"]) == (PRICE, qris_fee(PRICE))
    assert created.fee == 0 and qris.parse(created.qr_string).amount == PRICE


async def test_the_sandboxs_placeholder_is_never_sold_as_a_qr(
        tripay: TripayProvider, fake: FakeTripay, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    fake.sandbox = True
    with pytest.raises(ProviderSandboxQris):
        await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    [line] = harness.logged(caplog, "tripay_sandbox_without_qris")
    assert "GATEWAY_PROVIDER_URL unset" in line["fix"]


@pytest.mark.parametrize("address", ["203.0.113.7", "2001:db8::1"])
async def test_an_address_off_the_whitelist_is_explained_in_the_log(
        tripay: TripayProvider, fake: FakeTripay, clock: FakeClock,
        caplog: pytest.LogCaptureFixture, address: str) -> None:
    fake.unauthorized_ip = address
    with pytest.raises(ProviderBadResponse):
        await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    with pytest.raises(ProviderBadResponse):
        await tripay.transaction_status("T0000000")
    explained = harness.logged(caplog, "tripay_ip_not_whitelisted")
    assert len(explained) == 2  # create and status alike
    assert address in explained[0]["answer"] and "IPv4 AND IPv6" in explained[0]["fix"]


@pytest.mark.parametrize("overrides", [
    {"api_key": "DEV-wrong"},
    {"private_key": "another key"},  # Tripay refuses the signature
    {"merchant_code": "T99999"},
], ids=["api key", "private key", "merchant code"])
async def test_wrong_credentials_are_a_provider_error(
        fake: FakeTripay, http: aiohttp.ClientSession, clock: FakeClock,
        overrides: dict[str, str]) -> None:
    with pytest.raises(ProviderUnavailable):
        await adapter(fake, http, clock, **overrides).create_qris("sess-1", PRICE,
                                                                  clock() + WINDOW_MS)
    assert fake.transactions == {}


async def test_a_payment_window_tripay_does_not_accept_for_qris_is_a_provider_error(
        tripay: TripayProvider, fake: FakeTripay, clock: FakeClock) -> None:
    with pytest.raises(ProviderUnavailable):  # QRIS expiry is 10 to 60 minutes
        await tripay.create_qris("sess-1", PRICE, clock() + 5 * 60 * 1000)
    assert fake.transactions == {}


@pytest.mark.parametrize(("failure", "error"), [
    (harness.TIMEOUT, ProviderUnavailable),
    (harness.SERVER_ERROR, ProviderUnavailable),
    (harness.GARBAGE, ProviderUnavailable),
    (SUCCESS_FALSE, ProviderUnavailable),
    (harness.INVALID_QRIS, ProviderReturnedInvalidQris),
    (harness.STATIC_QRIS, ProviderReturnedInvalidQris),
    (harness.WRONG_AMOUNT, ProviderReturnedInvalidQris),
])
async def test_provider_failures_on_create_become_provider_errors(
        fake: FakeTripay, http: aiohttp.ClientSession, clock: FakeClock, failure: str,
        error: type[Exception]) -> None:
    fake.failure = failure
    # Short only where the fake never answers: a busy CI runner may take longer than
    # 0.5 s to answer the others.
    timeout_s = 0.5 if failure == harness.TIMEOUT else 10
    with pytest.raises(error):
        await adapter(fake, http, clock, timeout_seconds=timeout_s).create_qris(
            "sess-1", PRICE, clock() + WINDOW_MS)


@pytest.mark.parametrize("customer_pays_fee", [False, True], ids=["merchant fee", "payer fee"])
async def test_a_signed_paid_callback_is_a_payment_of_the_price(
        tripay: TripayProvider, fake: FakeTripay, http: aiohttp.ClientSession,
        clock: FakeClock, receiver: harness.Receiver, customer_pays_fee: bool) -> None:
    fake.customer_pays_fee = customer_pays_fee
    created = await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    clock.advance(42)
    status, answer = await fake.pay(http, created.trx_id, receiver[1])

    assert (status, answer) == (200, {"success": True,
                                      "data": {"eventId": f"{created.trx_id}:PAID"}})
    [note] = receiver[0].notifications
    assert (note.trx_id, note.amount, note.reported_status) == (created.trx_id, PRICE, "paid")
    assert note.paid_at_ms == clock() // 1000 * 1000 and note.replay_key is None
    # What the payer handed over, fees included, stays on record.
    assert json.loads(note.raw_body)["total_amount"] == PRICE + created.fee


async def test_a_short_or_inflated_payment_reports_the_price_it_covers(
        tripay: TripayProvider, fake: FakeTripay, http: aiohttp.ClientSession,
        clock: FakeClock, receiver: harness.Receiver) -> None:
    created = await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    await fake.pay(http, created.trx_id, receiver[1], total_amount=PRICE - 1000)
    await fake.pay(http, created.trx_id, receiver[1], total_amount=PRICE + 750)
    assert [note.amount for note in receiver[0].notifications] == [PRICE - 1000, PRICE + 750]


@pytest.mark.parametrize(("customer_pays_fee", "credited_delta", "price_paid"), [
    (False, -500, PRICE - 500),  # the merchant was credited less than the payer paid
    (True, -500, PRICE - 500),
    (True, +500, PRICE),  # credited more than the payer paid: the payer's figure counts
])
async def test_figures_that_disagree_count_as_the_smaller_payment(
        tripay: TripayProvider, fake: FakeTripay, clock: FakeClock, customer_pays_fee: bool,
        credited_delta: int, price_paid: int) -> None:
    fake.customer_pays_fee = customer_pays_fee
    created = await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    body = json.loads(fake.payment_callback(created.trx_id))
    body["amount_received"] += credited_delta
    raw = json.dumps(body).encode()
    headers = {"X-Callback-Signature": hmac_hex(PRIVATE_KEY, raw),
               "X-Callback-Event": "payment_status"}
    assert tripay.verify_notification(headers, raw, clock()).amount == price_paid


async def test_other_statuses_are_kept_as_what_they_are(
        tripay: TripayProvider, fake: FakeTripay, http: aiohttp.ClientSession,
        clock: FakeClock, receiver: harness.Receiver) -> None:
    created = await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    await fake.pay(http, created.trx_id, receiver[1], status="EXPIRED")
    [note] = receiver[0].notifications
    assert (note.reported_status, note.event_id, note.paid_at_ms) == (
        "expired", f"{created.trx_id}:EXPIRED", None)


async def test_tripay_retrying_a_callback_gives_the_same_event_id(
        tripay: TripayProvider, fake: FakeTripay, clock: FakeClock) -> None:
    created = await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    raw = fake.payment_callback(created.trx_id)
    headers = {"X-Callback-Signature": hmac_hex(PRIVATE_KEY, raw),
               "X-Callback-Event": "payment_status"}
    first = tripay.verify_notification(headers, raw, clock())
    clock.advance(120)  # Tripay resends every 2 minutes
    assert tripay.verify_notification(headers, raw, clock()).event_id == first.event_id


@pytest.mark.parametrize(("delivery", "reason"), [
    ({"private_key": "forger's key"}, "bad signature"),
    ({"signature": False}, "missing signature"),
])
async def test_a_callback_not_signed_tripays_way_is_refused(
        tripay: TripayProvider, fake: FakeTripay, http: aiohttp.ClientSession,
        clock: FakeClock, receiver: harness.Receiver, delivery: dict[str, Any],
        reason: str) -> None:
    created = await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    status, answer = await fake.pay(http, created.trx_id, receiver[1], **delivery)
    assert (status, answer["success"]) == (401, False)
    assert receiver[0].notifications == [] and receiver[0].rejections == [reason]


async def test_the_signature_covers_the_raw_bytes_not_the_json_they_parse_to(
        tripay: TripayProvider, fake: FakeTripay, http: aiohttp.ClientSession,
        clock: FakeClock, receiver: harness.Receiver) -> None:
    created = await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    raw = fake.payment_callback(created.trx_id)
    signature = hmac_hex(PRIVATE_KEY, raw)
    reserialised = json.dumps(json.loads(raw), indent=1).encode()
    status, _ = await harness.post_json(
        http, receiver[1], reserialised,
        {"X-Callback-Signature": signature, "X-Callback-Event": "payment_status"})
    assert status == 401 and receiver[0].rejections == ["bad signature"]
    status, _ = await harness.post_json(
        http, receiver[1], raw,
        {"X-Callback-Signature": signature.upper(), "X-Callback-Event": "payment_status"})
    assert status == 200 and len(receiver[0].notifications) == 1


@pytest.mark.parametrize("event", ["payment_status_v2", ""])
async def test_an_authentic_callback_of_another_event_is_kept_unread(
        tripay: TripayProvider, fake: FakeTripay, http: aiohttp.ClientSession,
        clock: FakeClock, receiver: harness.Receiver, event: str) -> None:
    """The event header is not signed, the body is: it is Tripay's, so it is kept for a
    person and Tripay told to stop retrying."""
    created = await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    status, answer = await fake.pay(http, created.trx_id, receiver[1], event=event)
    assert (status, answer["success"]) == (200, True) and receiver[0].rejections == []
    [note] = receiver[0].notifications
    assert (note.reported_status, note.amount) == (UNREADABLE_STATUS, 0)
    assert note.event_id.startswith("unreadable:")


async def test_an_authentic_callback_that_cannot_be_read_is_kept_unread(
        http: aiohttp.ClientSession, receiver: harness.Receiver) -> None:
    raw = b'{"reference": "T1", "status": "PAID", "total_amount": "lots"}'
    headers = {"X-Callback-Signature": hmac_hex(PRIVATE_KEY, raw),
               "X-Callback-Event": "payment_status"}
    status, answer = await harness.post_json(http, receiver[1], raw, headers)
    assert (status, answer["success"]) == (200, True)
    status, _ = await harness.post_json(http, receiver[1], raw, headers)  # Tripay's retry
    first, retry = receiver[0].notifications
    assert first.reported_status == UNREADABLE_STATUS and first.raw_body == raw.decode()
    assert retry.event_id == first.event_id  # the ledger records it as a duplicate


@pytest.mark.parametrize("customer_pays_fee", [False, True], ids=["merchant fee", "payer fee"])
async def test_status_follows_the_transaction_from_unpaid_to_paid(
        tripay: TripayProvider, fake: FakeTripay, clock: FakeClock,
        customer_pays_fee: bool) -> None:
    fake.customer_pays_fee = customer_pays_fee
    created = await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    pending = await tripay.transaction_status(created.trx_id)
    assert (pending.state, pending.amount, pending.paid_at_ms) == (
        TransactionState.PENDING, PRICE, None)

    clock.advance(60)
    fake.payment_callback(created.trx_id)  # paid, the callback lost on the way
    paid = await tripay.transaction_status(created.trx_id)
    # The price it paid for, the payer's fee beside it: never an amount mismatch.
    assert (paid.state, paid.amount, paid.fee, paid.paid_at_ms) == (
        TransactionState.PAID, PRICE, created.fee, clock() // 1000 * 1000)


@pytest.mark.parametrize("status", ["EXPIRED", "FAILED", "REFUND"])
async def test_status_of_a_transaction_that_will_not_be_paid_is_expired(
        tripay: TripayProvider, fake: FakeTripay, clock: FakeClock, status: str) -> None:
    created = await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    fake.payment_callback(created.trx_id, status=status)
    assert (await tripay.transaction_status(created.trx_id)).state == TransactionState.EXPIRED


@pytest.mark.parametrize("expires_lazily", [False, True])
async def test_status_of_an_unpaid_transaction_past_its_expiry_is_expired(
        tripay: TripayProvider, fake: FakeTripay, clock: FakeClock,
        expires_lazily: bool) -> None:
    fake.expires_lazily = expires_lazily
    created = await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    clock.advance(WINDOW_MS / 1000)
    assert (await tripay.transaction_status(created.trx_id)).state == TransactionState.EXPIRED


async def test_status_of_a_transaction_tripay_does_not_know_is_unknown(
        tripay: TripayProvider) -> None:
    assert (await tripay.transaction_status("T0000000")).state == TransactionState.UNKNOWN


async def test_status_when_tripay_fails_or_refuses_is_a_provider_error(
        tripay: TripayProvider, fake: FakeTripay, http: aiohttp.ClientSession,
        clock: FakeClock) -> None:
    created = await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    with pytest.raises(ProviderUnavailable):
        await adapter(fake, http, clock, api_key="DEV-wrong").transaction_status(created.trx_id)
    fake.status_failure = harness.SERVER_ERROR
    with pytest.raises(ProviderUnavailable):
        await tripay.transaction_status(created.trx_id)


async def test_a_refund_made_by_hand_is_reported_by_its_callback(
        tripay: TripayProvider, fake: FakeTripay, http: aiohttp.ClientSession,
        clock: FakeClock, receiver: harness.Receiver) -> None:
    created = await tripay.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    await fake.pay(http, created.trx_id, receiver[1])
    await fake.pay(http, created.trx_id, receiver[1], status="REFUND")
    _, refunded = receiver[0].notifications
    assert (refunded.reported_status, refunded.event_id) == (
        REPORTED_REFUND_SUCCEEDED, f"{created.trx_id}:REFUND")
    [report] = tripay.refund_reports(refunded)
    assert (report.trx_id, report.status, report.amount_rupiah) == (
        created.trx_id, RefundStatus.SUCCEEDED, PRICE)
    assert tripay.refund_reports(receiver[0].notifications[0]) == []


async def test_it_has_no_refund_api_so_a_refund_is_a_persons_task(
        tripay: TripayProvider) -> None:
    assert not tripay.refunds_by_api
    outcome = await tripay.refund(RefundRequest("T123", PRICE, "show cancelled", "rf-T123-1"))
    assert outcome.status == RefundStatus.MANUAL
