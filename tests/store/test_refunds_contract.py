"""The contract of the store's refunds (`Refunds`) and cancelled shows
(`Cancellations`), on every backend: a payment's refunds are made one at a time, so
never more than was paid, whoever races; each refund's state, found by id, payment,
status, the provider's id; the first cancellation of a show stands."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import NothingToRefund, RefundTooLarge
from gateway.refund_model import (
    Cancellation,
    Refund,
    RefundAsked,
    RefundStatus,
    after_answer,
    decide_refund,
)
from gateway.store.base import Store
from tests.store.conftest import T0


def asked(amount: int | None = None, trx_id: str = "TRX-1") -> RefundAsked:
    return RefundAsked(trx_id=trx_id, provider="simulator", received_rupiah=1000,
                       amount=amount, reason="test", requested_by="api", session_id="s1",
                       stream_id="demo", by_api=True)


async def refund(store: Store, amount: int | None = None, trx_id: str = "TRX-1",
                 at_ms: int = T0) -> Refund:
    return await store.refunds.create(
        trx_id, lambda existing: decide_refund(asked(amount, trx_id), existing, at_ms))


async def test_a_payment_is_refunded_up_to_what_was_paid(store: Store) -> None:
    first = await refund(store, 300)
    second = await refund(store)  # all that remains
    assert (first.number, first.amount, second.number, second.amount) == (1, 300, 2, 700)
    assert first.refund_id != second.refund_id
    with pytest.raises(NothingToRefund):
        await refund(store, 1)
    assert await store.refunds.of_payment("TRX-1") == [first, second]
    # A failed refund gives its share back to what may be refunded.
    await store.refunds.save(after_answer(second, "failed", T0 + 1, failure_code="412"))
    with pytest.raises(RefundTooLarge):
        await refund(store, 701)
    third = await refund(store)
    assert (third.number, third.amount) == (3, 700)


async def test_racing_requests_never_take_more_than_was_paid(
        two_handles: tuple[Store, Store]) -> None:
    here, there = two_handles

    async def one(handle: Store) -> Refund | None:
        try:
            return await refund(handle)
        except NothingToRefund:
            return None

    made = await asyncio.gather(*(one(handle) for handle in [here, there] * 10))
    assert len([r for r in made if r is not None]) == 1
    assert [r.amount for r in await there.refunds.of_payment("TRX-1")] == [1000]


async def test_a_refund_is_found_by_id_status_and_the_providers_id(store: Store) -> None:
    made = await refund(store, 400)
    other = await refund(store, 600, trx_id="TRX-2", at_ms=T0 + 5)
    assert await store.refunds.get(made.refund_id) == made
    assert await store.refunds.get("rf9-nothing") is None
    assert [r.refund_id for r in await store.refunds.unanswered(10)] == [made.refund_id,
                                                                         other.refund_id]
    answered = after_answer(made, "requested", T0 + 10, provider_refund_id="qrrf_1",
                            asked=True)
    await store.refunds.save(answered)
    assert await store.refunds.by_provider_id("qrrf_1") == answered
    assert [r.refund_id for r in await store.refunds.unanswered(10)] == [other.refund_id]
    done = after_answer(answered, "succeeded", T0 + 20)
    await store.refunds.save(done)
    assert await store.refunds.listing(RefundStatus.SUCCEEDED, None, 10) == [done]
    assert await store.refunds.listing(RefundStatus.REQUESTED, None, 10) == [other]
    assert [r.refund_id for r in await store.refunds.listing(None, None, 10)] == [
        other.refund_id, done.refund_id]  # newest first
    assert await store.refunds.listing(None, "TRX-2", 10) == [other]
    assert done.attempts == 1  # asked once


async def test_the_first_cancellation_of_a_show_stands(store: Store) -> None:
    first = Cancellation("demo", "artist ill", T0, "Sari")
    assert await store.cancellations.cancel(first) == first
    assert await store.cancellations.cancel(Cancellation("demo", "again", T0 + 1, "Budi")) \
        == first
    assert await store.cancellations.all() == {"demo": first}
