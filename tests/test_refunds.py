"""The refund use cases through the real app on both stores (the simulator refunds at
once): never two refunds for one payment or more than was paid, whoever races; a refund
ends access at once; a cancelled show sells nothing and refunds every ticket; what
went back comes out of the takings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.keys import GATE, REFUNDS, REPORTS
from gateway.ledger import takings
from tests.conftest import API_KEY, FakeClock, ViewerClient
from tests.gate.conftest import buy

OPERATOR = {"X-Api-Key": API_KEY}


async def refund(viewer: ViewerClient, trx_id: str, expect: int = 202,
                 **fields: Any) -> dict[str, Any]:
    return await viewer.call("POST", "/api/refunds", headers=OPERATOR, expect=expect,
                             json={"trxId": trx_id, "reason": "test", **fields})


async def test_racing_refunds_of_one_payment_give_it_back_once(viewer: ViewerClient) -> None:
    access = await buy(viewer, "demo")
    trx_id = (await viewer.status(access["sessionId"]))["trxId"]
    answers = await asyncio.gather(*(viewer.http.post(
        "/api/refunds", headers=OPERATOR, json={"trxId": trx_id, "reason": "race"})
        for _ in range(20)))
    statuses = sorted(answer.status for answer in answers)
    for answer in answers:
        answer.release()
    assert statuses == [202] + [409] * 19
    listed = await viewer.call("GET", "/api/refunds", headers=OPERATOR, expect=200)
    assert [(r["amount"], r["status"]) for r in listed["data"]["refunds"]] == [
        (1000, "succeeded")]


async def test_a_refund_ends_access_in_both_token_forms(viewer: ViewerClient) -> None:
    access = await buy(viewer, "demo")
    trx_id = (await viewer.status(access["sessionId"]))["trxId"]
    for url in (access["playbackUrl"], access["tokenPlaybackUrl"]):
        async with viewer.http.get(url) as response:
            assert response.status == 200
    assert (await refund(viewer, trx_id))["data"]["status"] == "succeeded"
    for url in (access["playbackUrl"], access["tokenPlaybackUrl"]):
        async with viewer.http.get(url) as response:
            assert response.status == 403
    app = viewer.http.app
    assert app is not None and app[GATE].is_ended(access["sessionId"])
    assert not (await viewer.check_access("demo", access["sessionId"]))["hasAccess"]


async def test_refunds_of_money_that_was_no_ticket(viewer: ViewerClient) -> None:
    """A wrong amount bought nothing: it is given back whole, and no access changes."""
    qr = await viewer.generate_qris()
    await viewer.pay(qr["trxId"], amount=999)
    made = await refund(viewer, qr["trxId"])
    assert made["data"]["amount"] == 999 and made["data"]["sessionId"] is None
    nothing = await refund(viewer, "SIM-NEVER-PAID", expect=409)
    assert nothing["code"] == "nothing_to_refund"


async def test_a_cancelled_show_sells_nothing_and_refunds_every_ticket(
        viewer: ViewerClient, make_viewer: Any, clock: FakeClock) -> None:
    tickets = [await buy(await make_viewer(), "demo") for _ in range(3)]
    cancelled = await viewer.call("POST", "/api/streams/demo/cancel", headers=OPERATOR,
                                  json={"reason": "the artist is ill"}, expect=202)
    assert (cancelled["data"]["status"], cancelled["data"]["refundsMade"]) == ("cancelled", 3)
    streams = (await viewer.call("GET", "/api/streams", expect=200))["data"]["streams"]
    assert next(s for s in streams if s["id"] == "demo")["status"] == "cancelled"
    refused = await viewer.generate_qris("demo", expect=409)
    assert refused["code"] == "stream_cancelled"
    app = viewer.http.app
    assert app is not None
    for ticket in tickets:
        assert app[GATE].is_ended(ticket["sessionId"])
    # The provider is asked in the background; the simulator gives it back at once.
    clock.advance(6)
    assert await app[REFUNDS].ask_unanswered() == 3
    listed = await viewer.call("GET", "/api/refunds", headers=OPERATOR, expect=200)
    assert sorted((r["status"], r["requestedBy"]) for r in listed["data"]["refunds"]) == [
        ("succeeded", "cancellation")] * 3
    again = await viewer.call("POST", "/api/streams/demo/cancel", headers=OPERATOR,
                              json={"reason": "again"}, expect=202)
    assert (again["data"]["reason"], again["data"]["refundsMade"]) == (
        "the artist is ill", 0)  # the first cancellation stands; nothing refunded twice


async def test_what_went_back_comes_out_of_the_takings(
        viewer: ViewerClient, make_viewer: Any, clock: FakeClock) -> None:
    first = await buy(viewer, "demo")
    await buy(await make_viewer(), "demo")
    trx_id = (await viewer.status(first["sessionId"]))["trxId"]
    await refund(viewer, trx_id, amount=400)
    app = viewer.http.app
    assert app is not None
    now_ms = clock()
    buckets = await app[REPORTS].sales(now_ms - 86_400_000, now_ms + 3_600_000)
    assert takings(buckets, now_ms).today == 2000 - 400



async def test_a_cancelled_shows_page_tells_its_ticket_holders_where_their_money_is(
        viewer: ViewerClient, make_viewer: Any, clock: FakeClock) -> None:
    await buy(viewer, "demo")
    stranger = await make_viewer()
    await viewer.call("POST", "/api/streams/demo/cancel", headers=OPERATOR,
                      json={"reason": "badai"}, expect=202)
    page = await (await viewer.http.get("/watch/demo")).text()
    assert "Acara ini dibatalkan" in page and "badai" in page
    assert "sedang dikembalikan" in page  # asked for, not yet answered
    app = viewer.http.app
    assert app is not None
    clock.advance(6)
    await app[REFUNDS].ask_unanswered()
    async with viewer.http.get("/watch/demo", headers={"Accept-Language": "en"}) as response:
        english = await response.text()
    assert "This show was cancelled" in english and "has been given back" in english
    assert 'id="pay-panel" class="panel pay" aria-labelledby="pay-heading" hidden' in english
    other = await (await stranger.http.get("/watch/demo")).text()
    assert "tidak memiliki tiket" in other


async def test_check_access_says_why_a_ticket_ended_early_until_its_window_is_over(
        viewer: ViewerClient, clock: FakeClock) -> None:
    """Issue 27: the watch page tells a viewer whose ticket was taken away what
    happened (and where its money stands) instead of asking them to pay again."""
    access = await buy(viewer, "demo")
    trx_id = (await viewer.status(access["sessionId"]))["trxId"]
    await refund(viewer, trx_id)
    ended = await viewer.check_access("demo")
    assert ended["hasAccess"] is False
    assert ended["endedReason"] == "refunded"
    assert ended["endedSessionId"] == access["sessionId"]
    assert ended["refunds"] == [{"amount": 1000, "status": "succeeded"}]
    # Once the window it bought is over, access would have ended anyway: plain "no access".
    clock.advance(2 * 3600 + 1)
    over = await viewer.check_access("demo")
    assert over["hasAccess"] is False and "endedReason" not in over


async def test_check_access_says_a_ticket_was_revoked_or_its_show_cancelled(
        make_viewer: Callable[..., Awaitable[ViewerClient]]) -> None:
    revoked_viewer, cancelled_viewer = await make_viewer(), await make_viewer()
    revoked = await buy(revoked_viewer, "demo")
    await revoked_viewer.call("POST", f"/api/sessions/{revoked['sessionId']}/revoke",
                              headers=OPERATOR, expect=200)
    answer = await revoked_viewer.check_access("demo")
    assert (answer["endedReason"], answer["refunds"]) == ("revoked", [])
    assert "cancelReason" not in answer

    await buy(cancelled_viewer, "konser-malam")
    await cancelled_viewer.call("POST", "/api/streams/konser-malam/cancel",
                                headers=OPERATOR, json={"reason": "Hujan badai"}, expect=202)
    answer = await cancelled_viewer.check_access("konser-malam")
    assert answer["endedReason"] == "cancelled"
    assert answer["cancelReason"] == "Hujan badai"
    assert [refund["amount"] for refund in answer["refunds"]] == [25000]
    # Nobody else learns anything about these tickets.
    assert "endedReason" not in await revoked_viewer.check_access("konser-malam")


async def test_a_viewer_who_never_paid_gets_no_ended_reason(viewer: ViewerClient) -> None:
    assert "endedReason" not in await viewer.check_access("demo")
