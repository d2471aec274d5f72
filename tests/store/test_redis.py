"""What only a shared store does: carry status changes between instances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from gateway.model import PaymentSession, SessionStatus
from gateway.store.redis import RedisStore
from tests.conftest import REDIS_URL
from tests.store.test_contract import T0, pending


@pytest.fixture
async def instances(redis_prefix: str) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    first = await RedisStore.open(REDIS_URL, redis_prefix)
    second = await RedisStore.open(REDIS_URL, redis_prefix)
    yield first, second
    await first.close()
    await second.close()


async def _follow(store: RedisStore, received: asyncio.Queue[PaymentSession],
                  subscribed: asyncio.Event) -> None:
    async def on_subscribed() -> None:
        subscribed.set()

    async for session in store.changes(on_subscribed):
        received.put_nowait(session)


async def test_a_change_published_by_one_instance_reaches_the_other_once(
        instances: tuple[RedisStore, RedisStore]) -> None:
    here, there = instances
    received: asyncio.Queue[PaymentSession] = asyncio.Queue()
    subscribed = asyncio.Event()
    follower = asyncio.create_task(_follow(here, received, subscribed))
    try:
        await asyncio.wait_for(subscribed.wait(), 5)
        own = pending("own")
        theirs = pending("theirs")
        paid = replace(theirs, status=SessionStatus.PAID, paid_at_ms=T0 + 1)
        await here.publish_change(own)  # its own change: not delivered back to it
        await here._redis.publish(here._keys.changes, "not json")  # ignored, not fatal
        await there.publish_change(paid)
        assert await asyncio.wait_for(received.get(), 5) == paid
        assert received.empty()
    finally:
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower


async def test_instances_with_different_prefixes_do_not_hear_each_other(
        instances: tuple[RedisStore, RedisStore], redis_prefix: str) -> None:
    here, _ = instances
    elsewhere = await RedisStore.open(REDIS_URL, redis_prefix + "other:")
    received: asyncio.Queue[PaymentSession] = asyncio.Queue()
    subscribed = asyncio.Event()
    follower = asyncio.create_task(_follow(here, received, subscribed))
    try:
        await asyncio.wait_for(subscribed.wait(), 5)
        await elsewhere.publish_change(pending("stranger"))
        marker = pending("marker")
        await instances[1].publish_change(marker)
        # Channel order is delivery order: the marker arriving first proves the
        # stranger's change was never delivered.
        assert await asyncio.wait_for(received.get(), 5) == marker
    finally:
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower
        await elsewhere.close()


async def test_a_server_that_keeps_nothing_on_disk_is_reported(
        redis_prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        appendonly = (await client.config_get("appendonly")).get("appendonly")
    finally:
        await client.aclose()
    store = await RedisStore.open(REDIS_URL, redis_prefix)
    await store.close()
    warned = any("appendonly off" in record.getMessage() for record in caplog.records)
    assert warned == (appendonly != "yes")
