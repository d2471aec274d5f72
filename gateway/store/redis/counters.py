"""Redis's rate-limit counters: one key per bucket and fixed window, shared by every
instance, counted and given its expiry in one MULTI."""

from __future__ import annotations

from gateway.store.base import Counters
from gateway.store.redis.client import Part, bounded


class RedisCounters(Part, Counters):
    @bounded
    async def count_hit(self, bucket: str, window_s: int, now_ms: int) -> int:
        key = self._keys.rate(bucket, now_ms // (window_s * 1000))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_s + 1)
            count, _ = await pipe.execute()
        return int(count)
