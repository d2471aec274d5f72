"""The whole flow against each provider's local fake, through the real app: create a
QR, pay, hear of it (also twice, out of order, forged, late, for the wrong amount,
with a fee on top, while the provider cannot confirm it), recover a lost notification
by reconciliation, hear of a refund, and meet a provider that times out, fails or
hands back a broken QR."""

from __future__ import annotations

import json
import logging
import random

import pytest

from gateway.ledger import needs_person
from gateway.providers.base import RefundRequest, RefundStatus
from tests.conftest import (
    API_KEY,
    store_snapshot,
)
from tests.providers.conftest import ACCESS_MS, PRICE, WINDOW_S, World, WorldFactory
from tests.providers.drivers import (
    DEEP,
    DRIVERS,
    OtomatisDriver,
    TripayDriver,
)


async def test_a_payment_buys_the_stream(world: World) -> None:
    qr = await world.viewer.generate_qris()
    # The provider was asked for the catalog price, with our reference, expiring with
    # our payment window.
    amount, reference, expires_ms = world.driver.asked(qr["trxId"])
    assert (amount, reference) == (PRICE, qr["sessionId"])
    if expires_ms is not None:
        assert abs(expires_ms - qr["expiresAt"]) < 60_000
    assert qr["amount"] == PRICE and qr["status"] == "pending"
    world.driver.pay(qr["trxId"])
    answer = await world.deliver(world.driver.notification(qr["trxId"]))
    assert answer["success"] is True
    assert answer["data"]["applied"] and answer["data"]["reason"] == "paid"
    access = await world.viewer.check_access("demo", qr["sessionId"])
    assert access["hasAccess"] and access["remainingTime"] == ACCESS_MS
    assert [row[3:] for row in await world.ledger()] == [(True, "paid")]


@pytest.mark.parametrize("name", sorted(DRIVERS))
async def test_the_public_url_is_the_notification_url_sent_per_transaction(
        make_world: WorldFactory, name: str) -> None:
    world = await make_world(name, public_url="https://tonton.example.id")
    qr = await world.viewer.generate_qris()
    sent = world.driver.callback_url_sent(qr["trxId"])
    assert sent in (None, "https://tonton.example.id/api/payment-callback")
    assert (sent is None) == (name in ("otomatis", "xendit"))  # dashboard-only


async def test_duplicates_and_out_of_order_notifications_change_nothing(world: World) -> None:
    qr = await world.viewer.generate_qris()
    earlier = world.driver.earlier_notification(qr["trxId"])  # ... arriving last
    world.driver.pay(qr["trxId"])
    paid = world.driver.notification(qr["trxId"])
    await world.deliver(paid)
    before = await world.viewer.status(qr["sessionId"])
    world.clock.advance(60)
    again = await world.deliver(paid)
    assert again["success"] is True and not again["data"]["applied"]
    if earlier is not None:
        late = await world.deliver(earlier)
        assert late["success"] is True and not late["data"]["applied"]
    after = await world.viewer.status(qr["sessionId"])
    assert after["status"] == "paid"
    assert (after["paidAt"], after["expiresAt"]) == (before["paidAt"], before["expiresAt"])
    ledger = await world.ledger()
    assert [row[3] for row in ledger] == [True] + [False] * (len(ledger) - 1)
    assert len(ledger) == (3 if earlier is not None else 2)


async def test_a_forged_notification_pays_nothing(world: World) -> None:
    qr = await world.viewer.generate_qris()
    forged = world.driver.forged(qr["trxId"], PRICE)
    if world.driver.signs_notifications:
        answer = await world.deliver(forged, expect=401)
        assert answer["code"] == "invalid_signature"
        assert await world.ledger() == []
    else:  # only a hint: the provider's status API says it is not paid
        answer = await world.deliver(forged, expect=200)
        assert not answer["data"]["applied"]
    assert (await world.viewer.status(qr["sessionId"]))["status"] == "pending"
    assert not (await world.viewer.check_access("demo", qr["sessionId"]))["hasAccess"]


@pytest.mark.parametrize("name", sorted(n for n, d in DRIVERS.items() if d.signs_notifications))
async def test_an_authentic_notification_we_cannot_read_is_kept_for_a_person(
        make_world: WorldFactory, name: str) -> None:
    """Refusing it would make the provider retry for hours and lose what it said: it is
    answered 200, changes nothing, and waits in the ledger for a person."""
    world = await make_world(name)
    qr = await world.viewer.generate_qris()
    delivery = world.driver.unreadable(qr["trxId"])
    assert delivery is not None
    answer = await world.deliver(delivery)
    assert answer["data"] == {**answer["data"], "applied": False, "reason": "not_understood"}
    again = await world.deliver(delivery)  # the provider's retry
    assert again["data"]["reason"] == "duplicate_event"
    assert (await world.viewer.status(qr["sessionId"]))["status"] == "pending"
    listed = await world.viewer.call("GET", "/api/notifications",
                                     headers={"X-Api-Key": API_KEY}, expect=200)
    kept = [entry for entry in listed["data"]["notifications"]
            if entry["reason"] == "not_understood"]
    assert len(kept) == 1 and kept[0]["rawBody"] == delivery[1].decode()
    assert kept[0]["reportedStatus"] == "unreadable" and not kept[0]["applied"]
    assert needs_person(kept[0]["reason"])  # first on the console's payments page


async def test_an_authentic_notification_nested_thousands_deep_is_never_a_5xx(
        world: World) -> None:
    """A 5xx makes a provider retry for a day. Where the provider's keys are checked
    outside the body (a header token, an HMAC over the bytes) it is kept for a person;
    where they are inside it (Midtrans) or there are none (otomatis.vip), a body nobody
    can read is refused as unsigned."""
    qr = await world.viewer.generate_qris()
    delivery = world.driver.with_field(qr["trxId"], DEEP)
    if world.driver.name in ("xendit", "tripay"):
        answer = await world.deliver(delivery)
        assert answer["data"] == {**answer["data"], "applied": False, "reason": "not_understood"}
    else:
        async with world.viewer.http.post("/api/payment-callback", data=delivery[1],
                                          headers=delivery[0]) as response:
            assert response.status in (400, 401), await response.text()
    assert (await world.viewer.status(qr["sessionId"]))["status"] == "pending"


def _nasty_values(count: int, seed: int) -> list[bytes]:
    """JSON texts, valid or not, that no provider sends: deep nesting of every kind,
    huge numbers, bytes that are no UTF-8, escapes of lone surrogates, junk."""
    rng = random.Random(seed)
    fixed = [DEEP, b"{" * 2000, b'{"a":' * 3000 + b"1" + b"}" * 3000, b"[" * 20_000,
             b"9" * 5000, b"-" + b"1" * 4400, b"1e999999", b"NaN", b'"\\ud800"', b'"\xff"',
             b"\xff\xfe", b"", b"null", b'"' + b"a" * 100_000 + b'"']
    return fixed + [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
                    for _ in range(count - len(fixed))]


async def test_authentic_notifications_carrying_anything_are_never_a_5xx(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    """A fuzzer of the callback with each provider's own authentication: every value
    of `_nasty_values` in an otherwise genuine paid notification. A 5xx would have the
    provider retry it for a day; an error line would wake someone for nothing."""
    caplog.set_level(logging.INFO)
    seed = random.SystemRandom().randrange(1 << 32)
    for value in _nasty_values(40, seed):
        qr = await world.viewer.generate_qris(expect=None)
        trx_id = qr.get("trxId") or (await world.viewer.call(
            "GET", "/api/user-sessions", expect=200))["data"]["activeSessions"][0]["trxId"]
        headers, body = world.driver.with_field(trx_id, value)
        async with world.viewer.http.post("/api/payment-callback", data=body,
                                          headers=headers) as response:
            assert response.status < 500, (seed, value[:80], await response.text())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], seed


async def test_a_wrong_amount_is_kept_for_the_operator_not_granted(world: World) -> None:
    qr = await world.viewer.generate_qris()
    world.driver.pay(qr["trxId"], paid_rupiah=PRICE - 1)
    answer = await world.deliver(world.driver.notification(qr["trxId"]))
    assert answer["data"] == {**answer["data"], "applied": False, "reason": "amount_mismatch"}
    assert (await world.viewer.status(qr["sessionId"]))["status"] == "pending"
    listed = await world.viewer.call("GET", "/api/notifications",
                                     params={"trxId": qr["trxId"]},
                                     headers={"X-Api-Key": API_KEY}, expect=200)
    [entry] = listed["data"]["notifications"]
    assert (entry["reason"], entry["amount"], entry["applied"]) == (
        "amount_mismatch", PRICE - 1, False)


@pytest.mark.parametrize("name", sorted(n for n, d in DRIVERS.items() if d.imposes_fees))
async def test_a_fee_on_top_is_recorded_and_the_price_granted(
        make_world: WorldFactory, name: str) -> None:
    world = await make_world(name)
    qr = await world.viewer.generate_qris()
    fee = world.driver.pay_with_fee(qr["trxId"])
    answer = await world.deliver(world.driver.notification(qr["trxId"]))
    assert answer["data"]["applied"] and answer["data"]["reason"] == "paid"
    listed = await world.viewer.call("GET", "/api/notifications",
                                     params={"trxId": qr["trxId"]},
                                     headers={"X-Api-Key": API_KEY}, expect=200)
    [entry] = listed["data"]["notifications"]
    assert (entry["amount"], entry["fee"]) == (PRICE, fee) and fee > 0


@pytest.mark.parametrize("name", sorted(n for n, d in DRIVERS.items() if d.imposes_fees))
async def test_a_fee_on_top_found_by_reconciliation_is_the_price_too(
        make_world: WorldFactory, name: str) -> None:
    world = await make_world(name)
    qr = await world.viewer.generate_qris()
    fee = world.driver.pay_with_fee(qr["trxId"])  # ... and the notification is lost
    world.clock.advance(world.settings.reconcile_interval_seconds)
    assert (await world.reconciler.run_once()).paid == 1
    assert (await world.viewer.status(qr["sessionId"]))["status"] == "paid"
    [(_, _, amount, applied, reason)] = await world.ledger()
    assert (amount, applied, reason) == (PRICE, True, "paid") and fee > 0


@pytest.mark.parametrize("name", sorted(n for n, d in DRIVERS.items()
                                        if d.confirms_notifications))
async def test_a_notification_the_provider_cannot_confirm_now_waits_for_reconciliation(
        make_world: WorldFactory, name: str) -> None:
    """What the provider did not sign is only believed once its status API agrees. Down
    at that moment: the provider still hears "done" (or it retries for hours), the
    notification is kept as unconfirmed, and reconciliation finishes the payment."""
    world = await make_world(name)
    qr = await world.viewer.generate_qris()
    world.driver.pay(qr["trxId"])
    delivery = world.driver.notification(qr["trxId"])
    world.driver.fail("500")
    answer = await world.deliver(delivery)
    assert answer["data"] == {**answer["data"], "applied": False, "reason": "unconfirmed"}
    assert (await world.viewer.status(qr["sessionId"]))["status"] == "pending"
    [(_, trx_id, _, applied, reason)] = await world.ledger()
    assert (trx_id, applied, reason) == (qr["trxId"], False, "unconfirmed")
    assert not needs_person(reason)  # no money to refund: reconciliation finishes it
    world.driver.fail(None)
    world.clock.advance(world.settings.reconcile_interval_seconds)
    assert (await world.reconciler.run_once()).paid == 1
    assert (await world.viewer.check_access("demo", qr["sessionId"]))["hasAccess"]


@pytest.mark.parametrize("name", sorted(DRIVERS))
async def test_the_answer_is_what_the_provider_reads_to_stop_retrying(
        make_world: WorldFactory, name: str) -> None:
    world = await make_world(name)
    qr = await world.viewer.generate_qris()
    world.driver.pay(qr["trxId"])
    answer = await world.deliver(world.driver.notification(qr["trxId"]))
    assert answer["success"] is True and answer["data"]["applied"]
    # otomatis.vip reads "status": true, in the same object; the others "success".
    assert answer.get("status") is (True if name == "otomatis" else None)


@pytest.mark.parametrize("name", sorted(DRIVERS))
async def test_a_refund_notification_is_kept_and_grants_nothing(
        make_world: WorldFactory, name: str) -> None:
    world = await make_world(name)
    qr = await world.viewer.generate_qris()
    world.driver.pay(qr["trxId"])
    await world.deliver(world.driver.notification(qr["trxId"]))
    outcome = await world.provider.refund(RefundRequest(qr["trxId"], PRICE, "cancelled",
                                                        "rf-flow-0001"))
    assert outcome.status == {"midtrans": RefundStatus.SUCCEEDED,
                              "xendit": RefundStatus.REQUESTED}.get(name, RefundStatus.MANUAL)
    assert world.provider.refunds_by_api == (outcome.status != RefundStatus.MANUAL)
    delivery = world.driver.refund_notification(qr["trxId"])
    if delivery is None:
        return  # otomatis.vip: a person refunds by hand, and it says nothing
    answer = await world.deliver(delivery)
    assert answer["data"] == {**answer["data"], "applied": False, "reason": "refund_reported"}
    ledger = await world.ledger()
    assert [row[3:] for row in ledger] == [(True, "paid"), (False, "refund_reported")]
    assert not needs_person("refund_reported")


async def test_an_otomatis_withdrawal_callback_is_kept_and_answered(
        make_world: WorldFactory) -> None:
    world = await make_world("otomatis")
    assert isinstance(world.driver, OtomatisDriver)
    answer = await world.deliver(world.driver.fake.withdrawal_callback(
        150_000, partner_ref_no="WD77"))
    assert answer["status"] is True and answer["success"] is True
    assert answer["data"] == {"applied": False, "reason": "not_a_payment",
                              "eventId": "withdrawal:WD77:success"}
    assert [row[1:] for row in await world.ledger()] == [
        ("", 150_000, False, "not_a_payment")]


async def test_the_tripay_sandboxs_placeholder_is_not_sold(make_world: WorldFactory) -> None:
    world = await make_world("tripay")
    assert isinstance(world.driver, TripayDriver)
    world.driver.fake.sandbox = True
    before = store_snapshot(world.settings)
    answer = await world.viewer.generate_qris(expect=502)
    assert answer["code"] == "provider_sandbox_qris"
    assert answer["error"].startswith("Penyedia pembayaran sedang dalam mode uji coba")
    assert store_snapshot(world.settings) == before


async def test_a_payment_after_the_window_still_buys_the_full_access(world: World) -> None:
    qr = await world.viewer.generate_qris()
    world.clock.advance(WINDOW_S + 60)
    assert (await world.viewer.status(qr["sessionId"]))["status"] == "expired"
    world.driver.pay(qr["trxId"])
    answer = await world.deliver(world.driver.notification(qr["trxId"]))
    assert answer["data"]["reason"] == "paid_after_payment_window"
    access = await world.viewer.check_access("demo", qr["sessionId"])
    assert access["hasAccess"] and access["remainingTime"] == ACCESS_MS


async def test_a_notification_heard_after_its_access_would_have_ended_opens_it_now(
        world: World) -> None:
    qr = await world.viewer.generate_qris()
    world.driver.pay(qr["trxId"])
    delivery = world.driver.notification(qr["trxId"])
    world.clock.advance(ACCESS_MS / 1000 + 3600)  # the provider retried all along
    answer = await world.deliver(delivery)
    assert answer["data"]["applied"]
    assert answer["data"]["reason"] == "paid_window_from_receipt"
    access = await world.viewer.check_access("demo", qr["sessionId"])
    assert access["hasAccess"] and access["remainingTime"] == ACCESS_MS


async def test_a_lost_notification_is_recovered_by_reconciliation(world: World) -> None:
    qr = await world.viewer.generate_qris()
    world.driver.pay(qr["trxId"])  # ... and the notification never comes
    assert (await world.reconciler.run_once()).asked == 0  # too fresh to ask about
    world.clock.advance(world.settings.reconcile_interval_seconds)
    report = await world.reconciler.run_once()
    assert (report.asked, report.paid) == (1, 1)
    status = await world.viewer.status(qr["sessionId"])
    assert status["status"] == "paid"
    assert (await world.viewer.check_access("demo", qr["sessionId"]))["hasAccess"]
    [(_event_id, trx_id, amount, applied, reason)] = await world.ledger()
    assert (trx_id, amount, applied, reason) == (qr["trxId"], PRICE, True, "paid")
    # The notification arriving after all is a duplicate.
    answer = await world.deliver(world.driver.notification(qr["trxId"]))
    assert not answer["data"]["applied"]
    assert (await world.viewer.status(qr["sessionId"]))["expiresAt"] == status["expiresAt"]


async def test_a_provider_outage_only_slows_reconciliation(world: World) -> None:
    qr = await world.viewer.generate_qris()
    world.driver.pay(qr["trxId"])
    world.driver.fail("500")
    world.clock.advance(world.settings.reconcile_interval_seconds)
    report = await world.reconciler.run_once()
    assert (report.asked, report.failed) == (1, 1)
    assert (await world.reconciler.run_once()).asked == 0  # backing off, not hammering
    # The rest of the service works meanwhile.
    other = await world.viewer.check_access("demo", qr["sessionId"])
    assert other["hasAccess"] is False
    world.driver.fail(None)
    world.clock.advance(world.settings.reconcile_interval_seconds * 2)
    assert (await world.reconciler.run_once()).paid == 1
    assert (await world.viewer.status(qr["sessionId"]))["status"] == "paid"


async def test_the_end_of_the_window_ends_the_transaction_at_the_provider(
        world: World) -> None:
    qr = await world.viewer.generate_qris()
    world.clock.advance(WINDOW_S + 1)
    report = await world.reconciler.run_once()
    assert report.cancelled == (1 if world.driver.can_cancel else 0)
    assert world.driver.cancelled(qr["trxId"]) == world.driver.can_cancel
    assert (await world.viewer.status(qr["sessionId"]))["status"] == "expired"
    # A payment that lands anyway (a screenshot of the QR, a slow bank) still counts.
    world.driver.pay(qr["trxId"])
    answer = await world.deliver(world.driver.notification(qr["trxId"]))
    assert answer["data"]["reason"] == "paid_after_payment_window"
    assert (await world.viewer.check_access("demo", qr["sessionId"]))["hasAccess"]


@pytest.mark.parametrize("failure, status, code", [
    ("timeout", 503, "provider_timeout"),
    ("500", 502, "provider_unavailable"),
    ("garbage", 502, "provider_bad_response"),
    ("invalid_qris", 502, "provider_invalid_qris"),
])
async def test_a_failing_provider_gets_a_clear_answer_and_no_session(
        world: World, failure: str, status: int, code: str) -> None:
    world.driver.fail(failure)
    before = store_snapshot(world.settings)
    answer = await world.viewer.generate_qris(expect=status)
    assert answer["success"] is False and answer["code"] == code
    assert answer["error"].startswith("Penyedia pembayaran")
    assert store_snapshot(world.settings) == before
    world.driver.fail(None)
    qr = await world.viewer.generate_qris(expect=201)
    # One payable QR: asking again gives the same one.
    again = await world.viewer.generate_qris(expect=200)
    assert again["trxId"] == qr["trxId"]


async def test_there_is_no_simulator_with_a_real_provider(world: World) -> None:
    qr = await world.viewer.generate_qris()
    answer = await world.viewer.call("POST", f"/simulator/pay/{qr['trxId']}", expect=404)
    assert answer["success"] is False
    assert (await world.viewer.status(qr["sessionId"]))["status"] == "pending"


async def test_operators_list_payments_by_status_and_stream(world: World) -> None:
    paid = await world.viewer.generate_qris("demo")
    world.driver.pay(paid["trxId"])
    await world.deliver(world.driver.notification(paid["trxId"]))
    pending = await world.viewer.generate_qris("konser-malam")
    listed = await world.viewer.call("GET", "/api/payments", params={"status": "paid"},
                                     headers={"X-Api-Key": API_KEY}, expect=200)
    assert [p["sessionId"] for p in listed["data"]["payments"]] == [paid["sessionId"]]
    listed = await world.viewer.call("GET", "/api/payments", params={"streamId": "konser-malam"},
                                     headers={"X-Api-Key": API_KEY}, expect=200)
    assert [(p["sessionId"], p["status"]) for p in listed["data"]["payments"]] == [
        (pending["sessionId"], "pending")]
    assert json.dumps(listed).count("qrString") == 0
    refused = await world.viewer.call("GET", "/api/payments", expect=401)
    assert refused["code"] == "unauthenticated"
    bad = await world.viewer.call("GET", "/api/payments", params={"status": "lost"},
                                  headers={"X-Api-Key": API_KEY}, expect=400)
    assert bad["code"] == "invalid_request"
