"""The Xendit adapter against a local Xendit over real HTTP: the QR it hands out is a
valid QRIS for the price, only callbacks carrying the dashboard token count, the status
API is read right, and every way Xendit can fail becomes a clean provider error."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import pytest

from gateway import qris
from gateway.errors import ProviderReturnedInvalidQris, ProviderUnavailable
from gateway.model import UNREADABLE_STATUS
from gateway.providers.base import TransactionState, UnreadableNotification
from gateway.providers.xendit import XenditProvider
from tests.conftest import FakeClock
from tests.providers import harness
from tests.providers.fake_xendit import FakeXendit, iso
from tests.server_process import free_port

SECRET_KEY = "xnd_development_" + "k" * 40
CALLBACK_TOKEN = "t" * 48
PRICE = 25000
WINDOW_MS = 1200 * 1000



@pytest.fixture
async def fake(clock: FakeClock, serve_fake: harness.ServeFake) -> FakeXendit:
    fake = FakeXendit(SECRET_KEY, CALLBACK_TOKEN, clock)
    await serve_fake(fake)
    return fake


def adapter(fake: FakeXendit, http: aiohttp.ClientSession, clock: FakeClock,
            **overrides: Any) -> XenditProvider:
    options: dict[str, Any] = {"secret_key": SECRET_KEY, "callback_token": CALLBACK_TOKEN,
                               "http": http, "clock": clock,
                               "base_url": fake.base_url}
    options.update(overrides)
    return XenditProvider(**options)


@pytest.fixture
def xendit(fake: FakeXendit, http: aiohttp.ClientSession, clock: FakeClock) -> XenditProvider:
    return adapter(fake, http, clock)


@pytest.fixture
async def receiver(xendit: XenditProvider,
                   serve_receiver: harness.ServeReceiver) -> harness.Receiver:
    return await serve_receiver(xendit)


async def test_create_asks_for_our_reference_price_and_window_and_returns_valid_qris(
        xendit: XenditProvider, fake: FakeXendit, clock: FakeClock) -> None:
    expires_at_ms = clock() + WINDOW_MS
    created = await xendit.create_qris("sess-abc", PRICE, expires_at_ms)

    assert created.trx_id.startswith("qr_") and created.fee == 0
    assert qris.problems(created.qr_string) == []
    parsed = qris.parse(created.qr_string)
    assert parsed.is_dynamic and parsed.amount == PRICE
    sent = fake.create_requests[-1]
    assert sent["body"] == {"reference_id": "sess-abc", "type": "DYNAMIC", "currency": "IDR",
                            "amount": PRICE, "expires_at": iso(expires_at_ms)}
    assert sent["headers"]["api-version"] == "2022-07-31"
    assert sent["headers"]["Authorization"] == (
        "Basic " + base64.b64encode(f"{SECRET_KEY}:".encode()).decode())


async def test_a_wrong_secret_key_is_a_provider_error(
        fake: FakeXendit, http: aiohttp.ClientSession, clock: FakeClock) -> None:
    with pytest.raises(ProviderUnavailable):
        await adapter(fake, http, clock, secret_key="xnd_wrong").create_qris(
            "sess-1", PRICE, clock() + WINDOW_MS)
    assert fake.qr_codes == {}


@pytest.mark.parametrize(("failure", "error"), [
    (harness.TIMEOUT, ProviderUnavailable),
    (harness.SERVER_ERROR, ProviderUnavailable),
    (harness.GARBAGE, ProviderUnavailable),
    (harness.INVALID_QRIS, ProviderReturnedInvalidQris),
    (harness.STATIC_QRIS, ProviderReturnedInvalidQris),
    (harness.WRONG_AMOUNT, ProviderReturnedInvalidQris),
])
async def test_provider_failures_on_create_become_provider_errors(
        fake: FakeXendit, http: aiohttp.ClientSession, clock: FakeClock, failure: str,
        error: type[Exception]) -> None:
    fake.failure = failure
    # Short only where the fake never answers: a busy CI runner may take longer than
    # 0.5 s to answer the others.
    xendit = adapter(fake, http, clock,
                     timeout_seconds=0.5 if failure == harness.TIMEOUT else 10)
    with pytest.raises(error):
        await xendit.create_qris("sess-1", PRICE, clock() + WINDOW_MS)


async def test_an_unreachable_xendit_is_a_provider_error(
        http: aiohttp.ClientSession, clock: FakeClock) -> None:
    xendit = XenditProvider(SECRET_KEY, CALLBACK_TOKEN, http, clock,
                            base_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ProviderUnavailable):
        await xendit.create_qris("sess-1", PRICE, clock() + WINDOW_MS)


@pytest.mark.parametrize("legacy", [False, True], ids=["2022-07-31", "v1"])
async def test_a_payment_callback_with_the_dashboard_token_is_a_payment(
        xendit: XenditProvider, fake: FakeXendit, http: aiohttp.ClientSession,
        clock: FakeClock, receiver: harness.Receiver, legacy: bool) -> None:
    created = await xendit.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    clock.advance(30)
    status, answer = await fake.pay(http, created.trx_id, receiver[1], legacy=legacy)

    assert (status, answer["success"]) == (200, True)
    [note] = receiver[0].notifications
    assert (note.trx_id, note.amount, note.reported_status) == (created.trx_id, PRICE, "paid")
    assert note.event_id == fake.payments[created.trx_id][0]["id"]
    assert note.event_id.startswith("qrpy_") and note.paid_at_ms == clock()
    assert note.provider == "xendit" and note.replay_key is None


async def test_xendit_retrying_one_payment_gives_the_same_event_id(
        xendit: XenditProvider, fake: FakeXendit, clock: FakeClock) -> None:
    created = await xendit.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    body = fake.payment_callback(created.trx_id)
    headers = {"x-callback-token": CALLBACK_TOKEN}
    first = xendit.verify_notification(headers, body, clock())
    clock.advance(15 * 60)  # Xendit's first retry
    again = xendit.verify_notification(headers, body, clock())
    assert first.event_id == again.event_id


@pytest.mark.parametrize(("token", "reason"), [
    ("", "missing callback token"),
    ("t" * 47 + "x", "bad callback token"),
    (CALLBACK_TOKEN[:-1], "bad callback token"),
    ("wrong", "bad callback token"),
])
async def test_a_callback_without_the_dashboard_token_is_refused(
        xendit: XenditProvider, fake: FakeXendit, http: aiohttp.ClientSession,
        clock: FakeClock, receiver: harness.Receiver, token: str,
        reason: str) -> None:
    created = await xendit.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    status, answer = await fake.pay(http, created.trx_id, receiver[1], token=token)
    assert (status, answer["code"]) == (401, "invalid_signature")
    assert receiver[0].notifications == [] and receiver[0].rejections == [reason]


async def test_a_fee_inflated_or_short_payment_reports_what_was_paid(
        xendit: XenditProvider, fake: FakeXendit, http: aiohttp.ClientSession,
        clock: FakeClock, receiver: harness.Receiver) -> None:
    created = await xendit.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    await fake.pay(http, created.trx_id, receiver[1], amount=PRICE + 2500)
    await fake.pay(http, created.trx_id, receiver[1], amount=PRICE - 1)
    assert [note.amount for note in receiver[0].notifications] == [PRICE + 2500, PRICE - 1]


@pytest.mark.parametrize(("body", "detail"), [
    (b'{"event": "payment.succeeded", "data": {"id": "py_1", "qr_id": "qr_1",'
     b' "amount": 1, "status": "SUCCEEDED"}}', "not a QR payment event"),
    (b'{"event": "qr.payment", "data": {"id": "qrpy_1", "amount": 1, "status": "SUCCEEDED"}}',
     "qr_id"),
    (b"not json", "JSON"),
])
async def test_an_authentic_callback_that_is_not_a_qr_payment_is_kept_unread(
        xendit: XenditProvider, http: aiohttp.ClientSession, clock: FakeClock,
        receiver: harness.Receiver, body: bytes, detail: str) -> None:
    """Xendit retries anything but a 2xx for hours: an authentic event we cannot apply
    is answered 200 and kept for a person."""
    status, answer = await harness.post_json(http, receiver[1], body,
                                             {"x-callback-token": CALLBACK_TOKEN})
    assert (status, answer["success"]) == (200, True) and receiver[0].rejections == []
    [note] = receiver[0].notifications
    assert (note.reported_status, note.amount, note.raw_body) == (
        UNREADABLE_STATUS, 0, body.decode())
    with pytest.raises(UnreadableNotification, match=detail):
        xendit.verify_notification({"x-callback-token": CALLBACK_TOKEN}, body, clock())


async def test_status_follows_the_qr_from_pending_to_paid(
        xendit: XenditProvider, fake: FakeXendit, clock: FakeClock) -> None:
    created = await xendit.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    pending = await xendit.transaction_status(created.trx_id)
    assert (pending.state, pending.amount, pending.paid_at_ms) == (
        TransactionState.PENDING, PRICE, None)

    clock.advance(60)
    fake.payment_callback(created.trx_id)  # paid, the callback lost on the way
    paid = await xendit.transaction_status(created.trx_id)
    assert (paid.state, paid.amount, paid.paid_at_ms) == (TransactionState.PAID, PRICE, clock())

    clock.advance(WINDOW_MS / 1000)  # still paid after the QR's own expiry
    assert (await xendit.transaction_status(created.trx_id)).state == TransactionState.PAID


async def test_status_of_an_unpaid_qr_past_its_expiry_is_expired(
        xendit: XenditProvider, clock: FakeClock) -> None:
    created = await xendit.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    clock.advance(WINDOW_MS / 1000)
    assert (await xendit.transaction_status(created.trx_id)).state == TransactionState.EXPIRED


@pytest.mark.parametrize("trx_id", ["qr_00000000-0000-0000-0000-000000000000", "SIMX", "qr_/x"])
async def test_status_of_a_qr_xendit_does_not_know_is_unknown(
        xendit: XenditProvider, trx_id: str) -> None:
    assert (await xendit.transaction_status(trx_id)).state == TransactionState.UNKNOWN


async def test_status_when_xendit_fails_is_a_provider_error(
        xendit: XenditProvider, fake: FakeXendit, clock: FakeClock) -> None:
    created = await xendit.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    fake.status_failure = harness.SERVER_ERROR
    with pytest.raises(ProviderUnavailable):
        await xendit.transaction_status(created.trx_id)
