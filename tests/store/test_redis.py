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


async def test_data_from_before_the_console_gets_its_indexes_once(redis_prefix: str) -> None:
    """A store written by a version without the console's indexes and counters: the
    first instance to open it builds them, and a second opening adds nothing twice."""
    from gateway.ledger import LedgerQuery
    from tests.store.test_console_contract import fill

    store = await RedisStore.open(REDIS_URL, redis_prefix)
    await fill(store)
    expected = (await store.ledger(LedgerQuery(), 100), await store.sales(T0 - 3_600_000,
                                                                          T0 + 3_600_000),
                await store.paid_now(T0 + 6000), await store.sessions_of_user("bob", 10))
    # Back to what the old version left: no console keys at all.
    console_keys = [key async for key in store._redis.scan_iter(match=f"{redis_prefix}*")
                    if key.removeprefix(redis_prefix).split(":")[0] in (
                        "ledger-tag", "ledger-tagged", "sales", "sales-streams", "paid-now",
                        "user-sessions", "console-indexed")]
    await store._redis.delete(*console_keys)
    async for key in store._redis.scan_iter(match=f"{redis_prefix}notification:*"):
        await store._redis.hdel(key, "stream_id")
    assert await store.ledger(LedgerQuery(), 100) == []
    await store.close()

    for _ in range(2):
        reopened = await RedisStore.open(REDIS_URL, redis_prefix)
        assert (await reopened.ledger(LedgerQuery(), 100),
                await reopened.sales(T0 - 3_600_000, T0 + 3_600_000),
                await reopened.paid_now(T0 + 6000),
                await reopened.sessions_of_user("bob", 10)) == expected
        await reopened.close()


async def test_a_ledger_from_before_the_tags_gets_them_once(redis_prefix: str) -> None:
    """A store written when the ledger's lists were one set per outcome, stream and
    reason: the first instance to open it lists every entry under the tags the model
    gives it, settled ones included; a second opening adds nothing twice."""
    from gateway.ledger import LedgerQuery, LedgerStatus, Settlement
    from tests.store.test_console_contract import fill

    store = await RedisStore.open(REDIS_URL, redis_prefix)
    await fill(store)
    mismatch = (await store.ledger(LedgerQuery(reason="amount_mismatch"), 1))[0]
    await store.settle(mismatch.entry_id, Settlement(T0 + 9000, "Sari", "refunded"))
    queries = [LedgerQuery(), LedgerQuery(status=LedgerStatus.ATTENTION),
               LedgerQuery(status=LedgerStatus.SETTLED), LedgerQuery(stream_id="news"),
               LedgerQuery(stream_id="demo", status=LedgerStatus.REFUSED)]
    expected = [await store.ledger(query, 100) for query in queries]
    tag_keys = [key async for key in store._redis.scan_iter(match=f"{redis_prefix}ledger-tag*")]
    assert tag_keys
    await store._redis.delete(*tag_keys)
    assert await store.ledger(LedgerQuery(), 100) == []
    await store.close()

    for _ in range(2):
        reopened = await RedisStore.open(REDIS_URL, redis_prefix)
        assert [await reopened.ledger(query, 100) for query in queries] == expected
        assert await reopened._redis.zcard(
            reopened._keys.ledger_tag("all")) == len(expected[0])
        await reopened.close()
