"""Money back through each provider's fake, through the real app (POST /api/refunds):
by API where the provider has one (Midtrans at once, Xendit PENDING then its callback),
a person's task where it has none (Tripay, otomatis.vip); the ticket's access ends at
once; the provider's word on the refund is kept in the ledger and moves the refund."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.keys import REFUNDS
from tests.conftest import API_KEY
from tests.providers.conftest import PRICE, World

OPERATOR = {"X-Api-Key": API_KEY}


async def paid_ticket(world: World) -> dict[str, Any]:
    qr = await world.viewer.generate_qris()
    world.driver.pay(qr["trxId"])
    answer = await world.deliver(world.driver.notification(qr["trxId"]))
    assert answer["data"]["applied"]
    assert (await world.viewer.check_access("demo", qr["sessionId"]))["hasAccess"]
    return qr


async def refunds_of(world: World, trx_id: str) -> list[dict[str, Any]]:
    listed = await world.viewer.call("GET", "/api/refunds", params={"trxId": trx_id},
                                     headers=OPERATOR, expect=200)
    return list(listed["data"]["refunds"])


async def test_a_refund_goes_back_the_providers_way_and_ends_access(world: World) -> None:
    qr = await paid_ticket(world)
    asked = await world.viewer.call("POST", "/api/refunds", headers=OPERATOR, expect=202,
                                    json={"trxId": qr["trxId"], "reason": "changed my mind"})
    refund = asked["data"]
    # All that was paid: the price, and any fee the payer paid on top.
    assert (refund["trxId"], refund["amount"], refund["provider"]) == (
        qr["trxId"], PRICE + qr["fee"], world.driver.name)
    expected = {"midtrans": "succeeded", "xendit": "requested", "tripay": "manual",
                "otomatis": "manual"}[world.driver.name]
    assert refund["status"] == expected
    # At once, like a revocation.
    access = await world.viewer.check_access("demo", qr["sessionId"])
    assert access["hasAccess"] is False
    assert (await world.viewer.status(qr["sessionId"]))["status"] == "expired"
    # The provider's word on it: stored in the ledger, and it moves the refund.
    delivery = world.driver.refund_notification(qr["trxId"])
    if delivery is not None:
        answer = await world.deliver(delivery)
        assert answer["data"]["reason"] == "refund_reported"
    [listed] = await refunds_of(world, qr["trxId"])
    assert listed["status"] == {"xendit": "succeeded", "midtrans": "succeeded"}.get(
        world.driver.name, "manual")
    # Nothing is left to give back.
    again = await world.viewer.call("POST", "/api/refunds", headers=OPERATOR, expect=409,
                                    json={"trxId": qr["trxId"], "reason": "twice?"})
    assert again["code"] == "nothing_to_refund"


@pytest.mark.parametrize("name", ["midtrans", "xendit"])
async def test_a_refund_the_provider_never_answered_is_asked_again_with_the_same_key(
        make_world: Any, name: str) -> None:
    world = await make_world(name)
    qr = await paid_ticket(world)
    world.driver.fail_refunds("timeout")
    asked = await world.viewer.call("POST", "/api/refunds", headers=OPERATOR, expect=202,
                                    json={"trxId": qr["trxId"], "reason": "no show"})
    assert asked["data"]["status"] == "requested"  # no answer: it may or may not be done
    world.driver.fail_refunds(None)
    app = world.viewer.http.server.app
    assert app is not None
    world.clock.advance(61)
    assert await app[REFUNDS].ask_unanswered() == 1
    [refund] = await refunds_of(world, qr["trxId"])
    assert refund["refundId"] == asked["data"]["refundId"]
    assert refund["status"] in ("succeeded", "requested")  # Xendit: PENDING, callback next
    assert world.driver.refunded_rupiah(qr["trxId"]) == PRICE  # paid out once


async def test_part_of_a_payment_then_the_rest_never_more(make_world: Any) -> None:
    world = await make_world("midtrans")
    qr = await paid_ticket(world)
    first = await world.viewer.call("POST", "/api/refunds", headers=OPERATOR, expect=202,
                                    json={"trxId": qr["trxId"], "amount": 4000,
                                          "reason": "partial"})
    too_much = await world.viewer.call("POST", "/api/refunds", headers=OPERATOR, expect=400,
                                       json={"trxId": qr["trxId"], "amount": PRICE,
                                             "reason": "too much"})
    assert too_much["code"] == "refund_too_large"
    rest = await world.viewer.call("POST", "/api/refunds", headers=OPERATOR, expect=202,
                                   json={"trxId": qr["trxId"], "reason": "the rest"})
    assert (first["data"]["amount"], rest["data"]["amount"]) == (4000, PRICE - 4000)
    assert first["data"]["refundId"] != rest["data"]["refundId"]
    assert world.driver.refunded_rupiah(qr["trxId"]) == PRICE
