"""POST /api/payment-callback: only authentic notifications count, each is kept, and
duplicates, replays and wrong amounts change nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import pytest

from gateway.settings import Settings
from tests.conftest import (
    API_KEY,
    WEBHOOK_SECRET,
    FakeClock,
    ViewerClient,
    stored_notifications,
)


def signed(body: dict[str, Any] | bytes, timestamp_s: int,
           secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    """The SPEC's signature, computed here independently of the provider module."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    mac = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + raw, hashlib.sha256)
    return raw, {"X-Gateway-Signature": f"t={timestamp_s},v1={mac.hexdigest()}",
                 "Content-Type": "application/json"}


def event(qr: dict[str, Any], clock: FakeClock, event_id: str = "evt-1",
          **overrides: Any) -> dict[str, Any]:
    return {"eventId": event_id, "trxId": qr["trxId"], "amount": qr["amount"],
            "status": "paid", "paidAt": clock(), **overrides}


async def deliver(viewer: ViewerClient, raw: bytes, headers: dict[str, str],
                  expect: int) -> dict[str, Any]:
    return await viewer.call("POST", "/api/payment-callback", data=raw, headers=headers,
                             expect=expect)


async def test_an_authentic_notification_pays_the_session(
        viewer: ViewerClient, clock: FakeClock, settings: Settings) -> None:
    qr = await viewer.generate_qris()
    raw, headers = signed(event(qr, clock), clock() // 1000)
    answer = await deliver(viewer, raw, headers, 200)
    assert answer["data"] == {"applied": True, "reason": "paid", "eventId": "evt-1"}
    assert (await viewer.check_access("demo", qr["sessionId"]))["hasAccess"]
    assert await stored_notifications(settings) == [
        ("evt-1", qr["trxId"], 1000, True, "paid")]


@pytest.mark.parametrize(
    ("make_headers", "reason"),
    [
        (lambda raw, t: {}, "missing signature"),
        (lambda raw, t: {"X-Gateway-Signature": "garbage"}, "malformed signature header"),
        (lambda raw, t: signed(raw, t, secret="x" * 40)[1], "bad signature"),
        (lambda raw, t: signed(raw + b" ", t)[1], "bad signature"),
        (lambda raw, t: signed(raw, t - 301)[1], "timestamp outside the tolerance window"),
        (lambda raw, t: signed(raw, t + 301)[1], "timestamp outside the tolerance window"),
        (lambda raw, t: {"X-Gateway-Signature":
                         signed(raw, t)[1]["X-Gateway-Signature"].replace(f"t={t}",
                                                                          f"t={t - 1}")},
         "bad signature"),
    ],
    ids=["missing", "malformed", "wrong-secret", "body-changed", "stale", "future",
         "timestamp-changed"],
)
async def test_inauthentic_notifications_get_401_and_change_nothing(
        viewer: ViewerClient, clock: FakeClock, settings: Settings,
        make_headers: Any, reason: str) -> None:
    qr = await viewer.generate_qris()
    raw = json.dumps(event(qr, clock)).encode()
    answer = await deliver(viewer, raw, make_headers(raw, clock() // 1000), 401)
    assert answer == {"success": False, "code": "invalid_signature",
                      "error": f"Notifikasi pembayaran ditolak: {reason}"}
    assert await stored_notifications(settings) == []
    assert (await viewer.status(qr["sessionId"]))["status"] == "pending"


async def test_a_signature_at_the_edge_of_the_window_is_accepted(
        viewer: ViewerClient, clock: FakeClock) -> None:
    qr = await viewer.generate_qris()
    raw, headers = signed(event(qr, clock), clock() // 1000 - 300)
    assert (await deliver(viewer, raw, headers, 200))["data"]["applied"]


async def test_the_same_delivery_again_is_a_duplicate_and_changes_nothing(
        viewer: ViewerClient, clock: FakeClock, settings: Settings) -> None:
    """A provider whose request timed out while we applied it sends the exact same bytes
    again: it must hear 200 (else it retries a payment that went through for a day),
    and nothing changes, however often it comes."""
    qr = await viewer.generate_qris()
    raw, headers = signed(event(qr, clock), clock() // 1000)
    await deliver(viewer, raw, headers, 200)
    paid = await viewer.status(qr["sessionId"])
    ledger = await stored_notifications(settings)
    clock.advance(5)
    for _ in range(3):
        answer = await deliver(viewer, raw, headers, 200)
        assert answer["data"] == {"applied": False, "reason": "duplicate_event",
                                  "eventId": "evt-1"}
    now = await viewer.status(qr["sessionId"])
    assert (now["status"], now["paidAt"], now["expiresAt"]) == (
        "paid", paid["paidAt"], paid["expiresAt"])
    assert await stored_notifications(settings) == ledger


async def test_altered_stale_or_forged_copies_of_a_delivery_stay_refused(
        viewer: ViewerClient, clock: FakeClock, settings: Settings) -> None:
    qr = await viewer.generate_qris()
    raw, headers = signed(event(qr, clock), clock() // 1000)
    await deliver(viewer, raw, headers, 200)
    altered = raw.replace(b'"amount": 1000', b'"amount": 1001')
    assert altered != raw
    await deliver(viewer, altered, headers, 401)
    _, forged = signed(event(qr, clock), clock() // 1000, secret="f" * 40)
    await deliver(viewer, raw, forged, 401)
    clock.advance(301)
    await deliver(viewer, raw, headers, 401)  # stale: outside the tolerance window
    assert len(await stored_notifications(settings)) == 1


async def test_duplicates_are_answered_200_and_change_nothing(
        viewer: ViewerClient, clock: FakeClock, settings: Settings) -> None:
    qr = await viewer.generate_qris()
    first, headers = signed(event(qr, clock), clock() // 1000)
    await deliver(viewer, first, headers, 200)
    paid = await viewer.status(qr["sessionId"])
    clock.advance(30)
    # The provider retries the same event, signed anew.
    again, headers = signed(event(qr, clock), clock() // 1000)
    answer = await deliver(viewer, again, headers, 200)
    assert answer["data"] == {"applied": False, "reason": "duplicate_event", "eventId": "evt-1"}
    # A second event for the same transaction.
    other, headers = signed(event(qr, clock, "evt-2"), clock() // 1000)
    answer = await deliver(viewer, other, headers, 200)
    assert answer["data"]["reason"] == "already_paid"
    now = await viewer.status(qr["sessionId"])
    assert (now["paidAt"], now["expiresAt"]) == (paid["paidAt"], paid["expiresAt"])
    assert [row[4] for row in await stored_notifications(settings)] == [
        "paid", "duplicate_event", "already_paid"]


async def test_wrong_amount_and_unknown_transactions_are_kept_not_applied(
        viewer: ViewerClient, clock: FakeClock, settings: Settings) -> None:
    qr = await viewer.generate_qris()
    short, headers = signed(event(qr, clock, amount=999), clock() // 1000)
    answer = await deliver(viewer, short, headers, 200)
    assert answer["data"] == {"applied": False, "reason": "amount_mismatch", "eventId": "evt-1"}
    ghost, headers = signed(event(qr, clock, "evt-2", trxId="NOSUCHTRX"), clock() // 1000)
    answer = await deliver(viewer, ghost, headers, 200)
    assert answer["data"]["reason"] == "unknown_transaction"
    assert (await viewer.status(qr["sessionId"]))["status"] == "pending"
    assert await stored_notifications(settings) == [
        ("evt-1", qr["trxId"], 999, False, "amount_mismatch"),
        ("evt-2", "NOSUCHTRX", 1000, False, "unknown_transaction")]


async def test_payment_after_expiry_still_grants_the_full_window(
        viewer: ViewerClient, clock: FakeClock) -> None:
    qr = await viewer.generate_qris()
    clock.advance(1200 + 60)
    assert (await viewer.status(qr["sessionId"]))["status"] == "expired"
    raw, headers = signed(event(qr, clock), clock() // 1000)
    answer = await deliver(viewer, raw, headers, 200)
    assert answer["data"]["reason"] == "paid_after_payment_window"
    access = await viewer.check_access("demo", qr["sessionId"])
    assert access["hasAccess"] and access["remainingTime"] == 7_200_000


async def test_an_authentic_body_we_cannot_read_is_400(viewer: ViewerClient,
                                                       clock: FakeClock,
                                                       settings: Settings) -> None:
    raw, headers = signed(b'{"eventId": 5}', clock() // 1000)
    answer = await deliver(viewer, raw, headers, 400)
    assert answer["code"] == "invalid_request"
    assert await stored_notifications(settings) == []


async def test_callback_ignores_cookies_and_never_sets_one(viewer: ViewerClient,
                                                          clock: FakeClock) -> None:
    qr = await viewer.generate_qris()
    raw, headers = signed(event(qr, clock), clock() // 1000)
    async with viewer.http.post("/api/payment-callback", data=raw, headers=headers) as resp:
        assert resp.status == 200
        assert "Set-Cookie" not in resp.headers



async def test_operators_read_the_ledger_viewers_cannot(viewer: ViewerClient,
                                                        clock: FakeClock) -> None:
    qr = await viewer.generate_qris()
    short, headers = signed(event(qr, clock, amount=999), clock() // 1000)
    await deliver(viewer, short, headers, 200)
    paid, headers = signed(event(qr, clock, "evt-2"), clock() // 1000)
    await deliver(viewer, paid, headers, 200)
    body = await viewer.call("GET", "/api/notifications", params={"trxId": qr["trxId"]},
                             headers={"X-Api-Key": API_KEY}, expect=200)
    ledger = body["data"]["notifications"]
    assert [(n["eventId"], n["applied"], n["reason"]) for n in ledger] == [
        ("evt-2", True, "paid"), ("evt-1", False, "amount_mismatch")]
    assert ledger[1]["amount"] == 999 and json.loads(ledger[1]["rawBody"])["amount"] == 999
    refused = await viewer.call("GET", "/api/notifications", expect=401)
    assert refused["code"] == "unauthenticated"
    bad = await viewer.call("GET", "/api/notifications", params={"limit": "0"},
                            headers={"X-Api-Key": API_KEY}, expect=400)
    assert bad["code"] == "invalid_request"


async def test_each_refused_callback_is_one_warning_line_with_its_reason(
        viewer: ViewerClient, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    qr = await viewer.generate_qris()
    raw, _ = signed(event(qr, clock), clock() // 1000)
    _, forged = signed(event(qr, clock), clock() // 1000, secret="f" * 40)
    caplog.set_level(logging.DEBUG)
    await deliver(viewer, raw, forged, 401)
    await deliver(viewer, raw, {}, 401)
    refusals = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [record.getMessage() for record in refusals] == ["callback_refused"] * 2
    assert [record.event_fields["reason"] for record in refusals] == [  # type: ignore[attr-defined]
        "bad signature", "missing signature"]
    assert not [record for record in caplog.records if record.exc_info]
