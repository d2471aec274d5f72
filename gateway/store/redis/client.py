"""What every part of the Redis store shares: the connections, the key names, bounded
calls, and optimistic transactions.

- Bounded: every call of a part is `@bounded`: it ends within the store's timeout, and
  its failure is the domain's `StoreUnavailable` (a 503 with Retry-After), never
  redis-py's exceptions.
- Atomic: every write is an optimistic transaction (`Client.transaction`: WATCH, read,
  MULTI/EXEC, retried when a watched key changed).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, NoReturn, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from gateway.errors import StoreUnavailable
from gateway.logs import log_event
from gateway.store.redis.keys import Keys

log = logging.getLogger("gateway.store.redis")

T = TypeVar("T")
P = ParamSpec("P")
PartT = TypeVar("PartT", bound="Part")
# redis-py's annotations cannot say that `decode_responses=True` makes every reply a str
# (they are unions of bytes, str and awaitables): the client and its pipelines are typed
# loosely here, and every reply is converted where it is read.
Pipeline = Any
# Connections per instance. Beyond them a request waits for one (up to the store's
# timeout) instead of failing: a burst queues, it does not turn into 500s.
POOL_CONNECTIONS = 64
# Transactions under way at once per instance. A transaction holds its pipeline's
# connection while it reads through others (scripts run on the pool, not on the WATCHing
# connection): were every pooled connection held by a transaction, their reads would
# wait for one another until the deadline (200 copies of one notification at once gave
# 503s). Half the pool for transactions leaves the other half for their reads.
CONCURRENT_TRANSACTIONS = POOL_CONNECTIONS // 2


class Client:
    """The connections and key names of one store, as every part uses them."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, timeout_s: float,
                 feed: aioredis.Redis | None = None) -> None:
        self.redis: Any = redis
        # The change feed's subscription idles for as long as nothing changes: it gets a
        # client of its own, without the read timeout every other call has.
        self.feed: Any = feed or redis
        self.keys = keys
        self.timeout_s = timeout_s
        self._transaction_slots = asyncio.Semaphore(CONCURRENT_TRANSACTIONS)

    @classmethod
    async def connect(cls, url: str, key_prefix: str, timeout_s: float) -> Client:
        # Bounded connects, reads and waits for a pooled connection.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, decode_responses=True, health_check_interval=30, max_connections=POOL_CONNECTIONS,
            timeout=timeout_s, socket_connect_timeout=min(timeout_s, 5), socket_timeout=timeout_s)
        redis = aioredis.Redis.from_pool(pool)
        feed = aioredis.Redis.from_url(url, decode_responses=True, health_check_interval=30,
                                       socket_connect_timeout=5)
        try:
            await redis.ping()
        except RedisError as exc:
            await redis.aclose()
            await feed.aclose()
            where = redis.connection_pool.connection_kwargs
            # One line an operator can act on; never the URL, which may hold a password.
            raise ConnectionError(f"GATEWAY_STORE: no Redis at {where.get('host', '?')}:"
                                  f"{where.get('port', '?')}: {exc}") from None
        return cls(redis, Keys(key_prefix), timeout_s=timeout_s, feed=feed)

    async def ping(self) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.redis.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            _unavailable("ping", exc)

    async def close(self) -> None:
        await self.redis.aclose()
        if self.feed is not self.redis:
            await self.feed.aclose()

    async def transaction(self, body: Callable[[Pipeline], Awaitable[T]]) -> T:
        """Run `body` under WATCH until it commits. `body` WATCHes what it reads (the
        pipeline runs commands at once while watching, and queues them otherwise), then
        calls `pipe.multi()` and queues its writes, or returns without it to commit
        nothing."""
        # A WATCH conflict means another writer committed: retrying is progress. Retried
        # until the caller's deadline (`bounded`), with a growing random pause so that
        # instances racing on one key stop colliding in step.
        async with self._transaction_slots, self.redis.pipeline(transaction=True) as pipe:
            conflicts = 0
            while True:
                try:
                    result = await body(pipe)
                    if pipe.explicit_transaction:
                        await pipe.execute()
                    return result  # leaving the pipeline resets it, which unwatches
                except WatchError:
                    await pipe.reset()
                    conflicts += 1
                    if conflicts > 3:
                        await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * conflicts)))


class Part:
    """One part of the store: the shared client, and its keys."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._redis: Any = client.redis
        self._keys = client.keys


def bounded(method: Callable[Concatenate[PartT, P], Coroutine[Any, Any, T]]
            ) -> Callable[Concatenate[PartT, P], Coroutine[Any, Any, T]]:
    """A part's call that ends within the store's timeout, and whose failure is
    `StoreUnavailable`: Redis killed, paused (CLIENT PAUSE, DEBUG SLEEP), loading its
    data set, or a transaction that kept losing to other instances until the deadline."""

    async def bounded(self: PartT, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            async with asyncio.timeout(self._client.timeout_s):
                return await method(self, *args, **kwargs)
        except (RedisError, OSError, TimeoutError) as exc:
            _unavailable(method.__name__, exc)

    return bounded


def _unavailable(operation: str, exc: BaseException) -> NoReturn:
    log_event(log, "store_unavailable", level=logging.WARNING, operation=operation,
              error=type(exc).__name__)
    raise StoreUnavailable() from None
