"""What only the Redis backend has to prove: one channel per key prefix, malformed
messages ignored, a warning when the server keeps nothing on disk, and data written by
earlier versions indexed once when the store is opened."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.ledger import LedgerQuery, LedgerStatus, Settlement
from gateway.model import PaymentSession
from gateway.store.base import Changes, Store
from gateway.store.redis import open_redis
from gateway.store.redis.keys import Keys
from tests.conftest import REDIS_URL
from tests.store.conftest import T0, fill_ledger, pending


@pytest.fixture
async def raw(redis_prefix: str) -> AsyncIterator[aioredis.Redis]:
    """The server itself, to see and change what the store keeps."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


async def _follow(changes: Changes, received: asyncio.Queue[PaymentSession],
                  subscribed: asyncio.Event) -> None:
    async def on_subscribed() -> None:
        subscribed.set()

    async for session in changes.changes(on_subscribed):
        received.put_nowait(session)


async def test_instances_with_different_prefixes_do_not_hear_each_other(
        redis_prefix: str, raw: aioredis.Redis) -> None:
    here = await open_redis(REDIS_URL, redis_prefix)
    there = await open_redis(REDIS_URL, redis_prefix)
    elsewhere = await open_redis(REDIS_URL, redis_prefix + "other:")
    received: asyncio.Queue[PaymentSession] = asyncio.Queue()
    subscribed = asyncio.Event()
    follower = asyncio.create_task(_follow(here.changes, received, subscribed))
    try:
        await asyncio.wait_for(subscribed.wait(), 5)
        await elsewhere.changes.publish(pending("stranger"))
        await raw.publish(Keys(redis_prefix).changes, "not json")  # ignored, not fatal
        marker = pending("marker")
        await there.changes.publish(marker)
        # Channel order is delivery order: the marker arriving first proves the
        # stranger's change was never delivered.
        assert await asyncio.wait_for(received.get(), 5) == marker
    finally:
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower
        for store in (here, there, elsewhere):
            await store.close()


async def test_a_server_that_keeps_nothing_on_disk_is_reported(
        redis_prefix: str, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    appendonly = (await raw.config_get("appendonly")).get("appendonly")
    await (await open_redis(REDIS_URL, redis_prefix)).close()
    warned = any("appendonly off" in record.getMessage() for record in caplog.records)
    assert warned == (appendonly != "yes")


async def _console(store: Store) -> tuple[object, ...]:
    paid_now = await store.sessions.paid_now(T0 + 6000)
    return (await store.ledger.ledger(LedgerQuery(), 100),
            await store.ledger.sales(T0 - 3_600_000, T0 + 3_600_000),
            {stream: sorted(ids) for stream, ids in paid_now.items()},
            await store.sessions.sessions_of_user("bob", 10))


async def test_data_from_before_the_console_gets_its_indexes_once(
        redis_prefix: str, raw: aioredis.Redis) -> None:
    """A store written by a version without the console's indexes and counters: the
    first instance to open it builds them, and a second opening adds nothing twice."""
    store = await open_redis(REDIS_URL, redis_prefix)
    await fill_ledger(store.sessions)
    expected = await _console(store)
    # Back to what the old version left: no console keys at all.
    console_keys = [key async for key in raw.scan_iter(match=f"{redis_prefix}*")
                    if key.removeprefix(redis_prefix).split(":")[0] in (
                        "ledger-tag", "ledger-tagged", "sales", "sales-streams", "paid-now",
                        "user-sessions", "console-indexed")]
    await raw.delete(*console_keys)
    async for key in raw.scan_iter(match=f"{redis_prefix}notification:*"):
        await raw.hdel(key, "stream_id")
    assert await store.ledger.ledger(LedgerQuery(), 100) == []
    await store.close()

    for _ in range(2):
        reopened = await open_redis(REDIS_URL, redis_prefix)
        assert await _console(reopened) == expected
        await reopened.close()


async def test_a_ledger_from_before_the_tags_gets_them_once(
        redis_prefix: str, raw: aioredis.Redis) -> None:
    """A store written when the ledger's lists were one set per outcome, stream and
    reason: the first instance to open it lists every entry under the tags the model
    gives it, settled ones included; a second opening adds nothing twice."""
    store = await open_redis(REDIS_URL, redis_prefix)
    await fill_ledger(store.sessions)
    mismatch = (await store.ledger.ledger(LedgerQuery(reason="amount_mismatch"), 1))[0]
    await store.ledger.settle(mismatch.entry_id, Settlement(T0 + 9000, "Sari", "refunded"))
    queries = [LedgerQuery(), LedgerQuery(status=LedgerStatus.ATTENTION),
               LedgerQuery(status=LedgerStatus.SETTLED), LedgerQuery(stream_id="news"),
               LedgerQuery(stream_id="demo", status=LedgerStatus.REFUSED)]
    expected = [await store.ledger.ledger(query, 100) for query in queries]
    tag_keys = [key async for key in raw.scan_iter(match=f"{redis_prefix}ledger-tag*")]
    assert tag_keys
    await raw.delete(*tag_keys)
    assert await store.ledger.ledger(LedgerQuery(), 100) == []
    await store.close()

    for _ in range(2):
        reopened = await open_redis(REDIS_URL, redis_prefix)
        assert [await reopened.ledger.ledger(query, 100) for query in queries] == expected
        assert await raw.zcard(Keys(redis_prefix).ledger_tag("all")) == len(expected[0])
        await reopened.close()
