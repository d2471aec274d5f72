"""Redis: the store for several gateway instances sharing it (SPEC, "Stores"), one
module per part over one client (client.py) and one key layout (keys.py).

Durable only as far as the Redis server is configured to be: payments need
`appendonly yes` (with `appendfsync always` for the same guarantee as SQLite's
`synchronous=FULL`). Opening it logs a warning when the server keeps nothing on disk,
and builds, once, the indexes an earlier version did not keep.
"""

from __future__ import annotations

import logging

from gateway.ledger import ledger_tags
from gateway.model import SessionStatus
from gateway.store.base import Store
from gateway.store.redis.changes import RedisChanges
from gateway.store.redis.client import Client
from gateway.store.redis.counters import RedisCounters
from gateway.store.redis.grants import RedisGrants
from gateway.store.redis.ledger import (
    RedisLedger,
    load_entries,
    queue_qr,
    queue_tags,
    queue_ticket,
)
from gateway.store.redis.line import RedisLine
from gateway.store.redis.media_keys import RedisMediaKeys
from gateway.store.redis.refunds import RedisCancellations, RedisRefunds
from gateway.store.redis.rows import load_sessions
from gateway.store.redis.sessions import RedisSessions
from gateway.store.redis.sign_ins import RedisSignIns

log = logging.getLogger("gateway.store.redis")

DEFAULT_TIMEOUT_S = 5.0


async def open_redis(url: str, key_prefix: str = "gateway:",
                     timeout_s: float = DEFAULT_TIMEOUT_S) -> Store:
    client = await Client.connect(url, key_prefix, timeout_s)
    try:
        await _warn_if_not_durable(client)
        await _index_for_console(client)
        await _tag_the_ledger(client)
    except BaseException:
        await client.close()
        raise
    return Store(sessions=RedisSessions(client), ledger=RedisLedger(client),
                 grants=RedisGrants(client), counters=RedisCounters(client),
                 changes=RedisChanges(client), connection=client,
                 sign_ins=RedisSignIns(client), refunds=RedisRefunds(client),
                 cancellations=RedisCancellations(client),
                 media_keys=RedisMediaKeys(client), line=RedisLine(client))


async def _warn_if_not_durable(client: Client) -> None:
    try:
        config = await client.redis.config_get("appendonly")
    except Exception:  # managed Redis often forbids CONFIG: nothing to tell then
        return
    if config.get("appendonly") != "yes":
        log.warning("the Redis server has appendonly off: a restart of Redis loses "
                    "payments stored since its last snapshot")


async def _index_for_console(client: Client) -> None:
    """Sessions and notifications stored by a version without the console's indexes
    and counters get them, once: the first instance to open the store claims the job
    (SET NX), so nothing is counted twice."""
    redis, keys = client.redis, client.keys
    if not await redis.set(keys.console_indexed, "1", nx=True):
        return
    # Every stored session is in one of these sets, every notification in the last: a
    # new store (or a new prefix on a shared server) has nothing to index, and must not
    # scan the server's other keys to find that out.
    if not await redis.exists(keys.due, keys.prunable, keys.ended, keys.notifications):
        return
    total = await redis.zcard(keys.notifications)
    for start in range(0, total, 1000):
        numbers = [int(n) for n in await redis.zrange(keys.notifications, start, start + 999)]
        async with redis.pipeline(transaction=False) as pipe:
            for number in numbers:
                pipe.hgetall(keys.notification(number))
            rows: list[dict[str, str]] = await pipe.execute()
        sessions = {session.session_id: session for session in await load_sessions(
            redis, keys, {row["session_id"] for row in rows if row.get("session_id")})}
        async with redis.pipeline(transaction=False) as pipe:
            for number, row in zip(numbers, rows, strict=True):
                if not row:
                    continue
                session = sessions.get(row["session_id"])
                stream_id = session.stream_id if session is not None else ""
                pipe.hset(keys.notification(number), "stream_id", stream_id)
            await pipe.execute()
    batch: list[str] = []
    async for key in redis.scan_iter(match=f"{keys.prefix}session:*", count=1000):
        batch.append(key.removeprefix(f"{keys.prefix}session:"))
        if len(batch) >= 1000:
            await _index_sessions(client, batch)
            batch = []
    await _index_sessions(client, batch)


async def _index_sessions(client: Client, session_ids: list[str]) -> None:
    redis, keys = client.redis, client.keys
    async with redis.pipeline(transaction=False) as pipe:
        for session in await load_sessions(redis, keys, session_ids):
            pipe.zadd(keys.user_sessions(session.user_id),
                      {session.session_id: session.created_at_ms})
            if session.status == SessionStatus.PAID:
                pipe.zadd(keys.paid_now(session.stream_id),
                          {session.session_id: session.expires_at_ms})
            queue_qr(pipe, keys, session)
            if session.paid_at_ms is not None:
                queue_ticket(pipe, keys, session)
        await pipe.execute()


async def _tag_the_ledger(client: Client) -> None:
    """Notifications stored by a version without the ledger's tags get them, once, as
    the model gives them (claimed with SET NX like `_index_for_console`)."""
    redis, keys = client.redis, client.keys
    if not await redis.set(keys.ledger_tagged, "1", nx=True):
        return
    total = await redis.zcard(keys.notifications)
    for start in range(0, total, 1000):
        numbers = [int(n) for n in await redis.zrange(keys.notifications, start, start + 999)]
        async with redis.pipeline(transaction=False) as pipe:
            for entry in await load_entries(redis, keys, numbers):
                queue_tags(pipe, keys, entry, ledger_tags(entry))
            await pipe.execute()
