"""The contract of the store's change feed (`Changes`), on every backend: a shared store
carries each status change to every other instance once, never back to its sender; an
embedded one has no other instance to tell."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from gateway.model import PaymentSession, SessionStatus
from gateway.store.base import Changes, Store
from tests.store.conftest import T0, pending


async def _follow(changes: Changes, received: asyncio.Queue[PaymentSession],
                  subscribed: asyncio.Event) -> None:
    async def on_subscribed() -> None:
        subscribed.set()

    async for session in changes.changes(on_subscribed):
        received.put_nowait(session)


async def test_a_change_published_by_one_instance_reaches_the_others_once(
        two_handles: tuple[Store, Store]) -> None:
    here, there = two_handles
    assert here.shared == there.shared
    if not here.shared:
        await here.changes.publish(pending())  # nobody to tell: nothing happens
        with pytest.raises(NotImplementedError):
            here.changes.changes(lambda: asyncio.sleep(0))
        return
    received: asyncio.Queue[PaymentSession] = asyncio.Queue()
    subscribed = asyncio.Event()
    follower = asyncio.create_task(_follow(here.changes, received, subscribed))
    try:
        await asyncio.wait_for(subscribed.wait(), 5)
        theirs = pending("theirs")
        paid = replace(theirs, status=SessionStatus.PAID, paid_at_ms=T0 + 1)
        await here.changes.publish(pending("own"))  # its own change: not delivered back
        await there.changes.publish(paid)
        assert await asyncio.wait_for(received.get(), 5) == paid
        assert received.empty()
    finally:
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower
