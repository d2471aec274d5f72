"""The Xendit adapter against a local Xendit over real HTTP: the QR it hands out is a
valid QRIS for the price, only callbacks carrying the dashboard token count and only as
the status API confirms them, the status API is read right, every way Xendit can fail
becomes a clean provider error, and refunds go through its QR refund API (requested,
then reported by callback), once per idempotency key."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import aiohttp
import pytest

from gateway import qris
from gateway.errors import ProviderReturnedInvalidQris, ProviderUnavailable
from gateway.model import (
    REPORTED_REFUND_FAILED,
    REPORTED_REFUND_PENDING,
    REPORTED_REFUND_SUCCEEDED,
    UNCONFIRMED_STATUS,
    UNREADABLE_STATUS,
)
from gateway.providers.base import (
    RefundRequest,
    RefundStatus,
    TransactionState,
    UnreadableNotification,
)
from gateway.providers.xendit import XenditProvider
from tests.conftest import FakeClock
from tests.providers import harness
from tests.providers.fake_xendit import REFUND_TEST_FAILURES, FakeXendit, iso
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


async def test_each_call_leaves_a_provider_call_line_without_the_key(
        xendit: XenditProvider, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """The line the README tells an operator to watch on the first live payments."""
    caplog.set_level(logging.INFO, logger="gateway")
    await xendit.create_qris("sess-abc", PRICE, clock() + WINDOW_MS)
    [line] = harness.logged(caplog, "provider_call")
    assert {key: line[key] for key in ("provider", "method", "path", "status")} == {
        "provider": "xendit", "method": "POST", "path": "/qr_codes", "status": 201}
    assert isinstance(line["elapsedMs"], float) and line["elapsedMs"] >= 0
    assert SECRET_KEY not in repr(line)


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


async def paid_qr(xendit: XenditProvider, fake: FakeXendit, clock: FakeClock,
                  price: int = PRICE) -> tuple[str, str]:
    """A QR paid for its price: (its id, its payment's qrpy_ id)."""
    created = await xendit.create_qris("sess-1", price, clock() + WINDOW_MS)
    fake.payment_callback(created.trx_id)
    return created.trx_id, fake.payments[created.trx_id][0]["id"]


# What Xendit sends with every callback: the token, which covers nothing of the body.
TOKEN = {"x-callback-token": CALLBACK_TOKEN}


async def test_a_payment_callback_is_recorded_as_the_payments_list_confirms_it(
        xendit: XenditProvider, fake: FakeXendit, clock: FakeClock) -> None:
    qr_id, payment_id = await paid_qr(xendit, fake, clock)
    body = json.loads(fake.payment_callback(qr_id))
    fake.payments[qr_id].pop()  # that second payment is only claimed
    body["data"]["amount"] = PRICE * 10  # ... and its amount rewritten
    raw = json.dumps(body).encode()
    note = await xendit.authenticate(TOKEN, raw, clock())
    # The QR's one real payment, as Xendit lists it.
    assert (note.reported_status, note.amount, note.event_id) == ("paid", PRICE, payment_id)
    kept = json.loads(note.raw_body)
    assert kept["notification"] == raw.decode()
    assert json.loads(kept["status"])["data"][0]["id"] == payment_id


async def test_a_paid_callback_replayed_for_another_qr_pays_nothing(
        xendit: XenditProvider, fake: FakeXendit, clock: FakeClock) -> None:
    """The token is static and the body signed by nothing: a captured callback with
    another QR's id is only a claim, which that QR's payments list denies."""
    qr_id, _ = await paid_qr(xendit, fake, clock)
    other = await xendit.create_qris("sess-2", PRICE, clock() + WINDOW_MS)
    body = json.loads(fake.payment_callback(qr_id))
    body["data"]["qr_id"] = other.trx_id
    raw = json.dumps(body).encode()
    assert xendit.verify_notification(TOKEN, raw, clock()).reported_status == "paid"
    note = await xendit.authenticate(TOKEN, raw, clock())
    assert (note.reported_status, note.trx_id) == ("pending", other.trx_id)
    assert note.event_id == f"status:{other.trx_id}:pending"


async def test_a_payment_xendit_cannot_confirm_now_is_kept_unconfirmed(
        xendit: XenditProvider, fake: FakeXendit, clock: FakeClock) -> None:
    qr_id, payment_id = await paid_qr(xendit, fake, clock)
    raw = json.dumps({"event": "qr.payment", "data": fake.payments[qr_id][0]}).encode()
    fake.status_failure = harness.SERVER_ERROR
    note = await xendit.authenticate(TOKEN, raw, clock())
    assert (note.reported_status, note.event_id) == (UNCONFIRMED_STATUS,
                                                     f"unconfirmed:{payment_id}")


def refund_of(qr_id: str, amount: int = PRICE, key: str = "rf-qr-0001",
              payment_id: str | None = None) -> RefundRequest:
    return RefundRequest(qr_id, amount, "Show cancelled", key, payment_id)


@pytest.mark.parametrize("knows_payment", [True, False], ids=["payment id", "looked up"])
async def test_a_refund_is_requested_then_reported_by_its_callback(
        xendit: XenditProvider, fake: FakeXendit, clock: FakeClock,
        knows_payment: bool) -> None:
    assert xendit.refunds_by_api
    qr_id, payment_id = await paid_qr(xendit, fake, clock)
    outcome = await xendit.refund(refund_of(qr_id, 10_000,
                                            payment_id=payment_id if knows_payment else None))
    assert outcome.status == RefundStatus.REQUESTED
    assert outcome.provider_refund_id is not None
    assert outcome.provider_refund_id.startswith("qrrf_")
    [sent] = fake.refund_requests
    assert sent["payment_id"] == payment_id
    assert sent["body"] == {"amount": 10_000, "reason": "Show cancelled"}
    assert sent["headers"]["Idempotency-key"] == "rf-qr-0001"
    assert sent["headers"]["api-version"] == "2022-07-31"
    [callback] = fake.finish_refunds()
    note = await xendit.authenticate(TOKEN, callback, clock())
    assert (note.reported_status, note.amount, note.trx_id) == (
        REPORTED_REFUND_SUCCEEDED, 10_000, "")
    assert note.event_id == f"{outcome.provider_refund_id}:succeeded"
    [report] = xendit.refund_reports(note)
    assert (report.status, report.provider_refund_id, report.payment_id,
            report.amount_rupiah) == (RefundStatus.SUCCEEDED, outcome.provider_refund_id,
                                      payment_id, 10_000)
    assert fake.payments[qr_id][0]["status"] == "REFUNDED"
    # What remains may be refunded too; then it is all gone.
    rest = await xendit.refund(refund_of(qr_id, PRICE - 10_000, key="rf-qr-0002"))
    assert rest.status == RefundStatus.REQUESTED
    again = await xendit.refund(refund_of(qr_id, 1, key="rf-qr-0003"))
    assert (again.status, again.failure_code) == (RefundStatus.FAILED,
                                                  "MAXIMUM_REFUND_AMOUNT_REACHED")


@pytest.mark.parametrize(("amount", "code"), [
    (10300, "MAXIMUM_REFUND_AMOUNT_REACHED"), (10301, "PARTIAL_REFUND_NOT_SUPPORTED"),
    (10303, "REFUND_NOT_SUPPORTED"), (10304, "REFUND_IN_PROGRESS"),
    (10305, "INELIGIBLE_TRANSACTION"), (PRICE + 1, "MAXIMUM_REFUND_AMOUNT_REACHED"),
])
async def test_a_refused_refund_is_failed_with_xendits_error_code(
        xendit: XenditProvider, fake: FakeXendit, clock: FakeClock, amount: int,
        code: str) -> None:
    qr_id, _ = await paid_qr(xendit, fake, clock)
    outcome = await xendit.refund(refund_of(qr_id, amount))
    assert (outcome.status, outcome.failure_code) == (RefundStatus.FAILED, code)
    assert json.loads(outcome.raw_body)["error_code"] == code
    assert fake.refunds == {}


@pytest.mark.parametrize(("amount", "code"), sorted(REFUND_TEST_FAILURES.items()))
async def test_a_refund_that_fails_later_is_reported_failed_with_its_code(
        xendit: XenditProvider, fake: FakeXendit, clock: FakeClock, amount: int,
        code: str) -> None:
    qr_id, _ = await paid_qr(xendit, fake, clock)
    outcome = await xendit.refund(refund_of(qr_id, amount))
    assert outcome.status == RefundStatus.REQUESTED
    [callback] = fake.finish_refunds()
    note = await xendit.authenticate(TOKEN, callback, clock())
    [report] = xendit.refund_reports(note)
    assert (note.reported_status, report.status, report.failure_code) == (
        REPORTED_REFUND_FAILED, RefundStatus.FAILED, code)
    assert fake.payments[qr_id][0]["status"] == "SUCCEEDED"  # nothing went back


async def test_an_unpaid_qr_cannot_be_refunded(xendit: XenditProvider,
                                               clock: FakeClock) -> None:
    created = await xendit.create_qris("sess-1", PRICE, clock() + WINDOW_MS)
    outcome = await xendit.refund(refund_of(created.trx_id))
    assert (outcome.status, outcome.failure_code) == (RefundStatus.FAILED, "NO_PAYMENT")


@pytest.mark.parametrize("variant", ["replay", "conflict"])
async def test_one_idempotency_key_is_one_refund(
        xendit: XenditProvider, fake: FakeXendit, clock: FakeClock, variant: str) -> None:
    fake.repeated_key = variant
    qr_id, _ = await paid_qr(xendit, fake, clock)
    first = await xendit.refund(refund_of(qr_id))
    again = await xendit.refund(refund_of(qr_id))
    assert again.status == RefundStatus.REQUESTED and len(fake.refunds) == 1
    assert again.provider_refund_id == (first.provider_refund_id if variant == "replay"
                                        else None)
    fake.finish_refunds()
    if variant == "replay":  # the refund as it stands
        done = await xendit.refund(refund_of(qr_id))
        assert (done.status, done.provider_refund_id) == (RefundStatus.SUCCEEDED,
                                                          first.provider_refund_id)


async def test_a_refund_whose_answer_is_lost_is_unknown_and_asked_again_safely(
        fake: FakeXendit, http: aiohttp.ClientSession, clock: FakeClock) -> None:
    xendit = adapter(fake, http, clock, timeout_seconds=0.5)
    qr_id, _ = await paid_qr(xendit, fake, clock)
    fake.refund_answer_lost = True
    lost = await xendit.refund(refund_of(qr_id))
    assert lost.status == RefundStatus.UNKNOWN  # taken or not: ask again, same key
    fake.refund_answer_lost = False
    again = await xendit.refund(refund_of(qr_id))
    assert again.status == RefundStatus.REQUESTED and len(fake.refunds) == 1


@pytest.mark.parametrize("failure", [harness.SERVER_ERROR, "rate_limited"])
async def test_a_refund_xendit_did_not_take_is_unknown(
        xendit: XenditProvider, fake: FakeXendit, clock: FakeClock, failure: str) -> None:
    qr_id, _ = await paid_qr(xendit, fake, clock)
    fake.refund_failure = failure
    assert (await xendit.refund(refund_of(qr_id))).status == RefundStatus.UNKNOWN
    fake.status_failure = harness.SERVER_ERROR  # nor can it look the payment up
    assert (await xendit.refund(refund_of(qr_id, payment_id=None))).status == (
        RefundStatus.UNKNOWN)


async def test_a_refund_callback_is_believed_only_as_xendit_confirms_it(
        xendit: XenditProvider, fake: FakeXendit, clock: FakeClock) -> None:
    qr_id, _ = await paid_qr(xendit, fake, clock)
    outcome = await xendit.refund(refund_of(qr_id, 20301))  # it will fail
    assert outcome.provider_refund_id is not None
    claimed = fake.refund_callback(outcome.provider_refund_id, status="SUCCEEDED")
    note = await xendit.authenticate(TOKEN, claimed, clock())  # still pending
    assert note.reported_status == REPORTED_REFUND_PENDING
    [report] = xendit.refund_reports(note)
    assert report.status == RefundStatus.REQUESTED
    invented = fake.refund_callback(outcome.provider_refund_id, id="qrrf_invented")
    note = await xendit.authenticate(TOKEN, invented, clock())
    assert (note.reported_status, xendit.refund_reports(note)) == ("unknown", [])
    fake.status_failure = harness.SERVER_ERROR
    note = await xendit.authenticate(TOKEN, claimed, clock())
    assert note.reported_status == UNCONFIRMED_STATUS and xendit.refund_reports(note) == []
