"""Redis's rate-limit counters: one key per bucket and fixed window, shared by every
instance, counted and given its expiry in one MULTI."""

from __future__ import annotations

from gateway.store.base import Counters
from gateway.store.redis.client import Client, Part, bounded

# KEYS[1] the bucket's next free moment; ARGV now_ms, interval_ms, max_wait_ms,
# catch_up_ms.
_RESERVE = """
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = tonumber(ARGV[1])
local earliest = now - tonumber(ARGV[4])
if free < earliest then free = earliest end
if free - now > tonumber(ARGV[3]) then return -1 end
local following = free + tonumber(ARGV[2])
redis.call('SET', KEYS[1], following, 'PX', math.max(following - now, 0) + 60000)
return math.max(free - now, 0)
"""
# KEYS[1] as above; ARGV until_ms, now_ms.
_HOLD = """
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
local until_ms = tonumber(ARGV[1])
if until_ms > free then
  redis.call('SET', KEYS[1], until_ms, 'PX', until_ms - tonumber(ARGV[2]) + 60000)
end
return 0
"""


class RedisCounters(Part, Counters):
    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._reserve = client.redis.register_script(_RESERVE)
        self._hold = client.redis.register_script(_HOLD)

    @bounded
    async def count_hit(self, bucket: str, window_s: int, now_ms: int) -> int:
        key = self._keys.rate(bucket, now_ms // (window_s * 1000))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_s + 1)
            count, _ = await pipe.execute()
        return int(count)

    @bounded
    async def reserve(self, bucket: str, interval_ms: int, now_ms: int,
                      max_wait_ms: int, catch_up_ms: int = 0) -> int | None:
        wait_ms = int(await self._reserve(keys=[self._keys.pace(bucket)],
                                          args=[now_ms, interval_ms, max_wait_ms,
                                                catch_up_ms]))
        return None if wait_ms < 0 else wait_ms

    @bounded
    async def hold(self, bucket: str, until_ms: int, now_ms: int) -> None:
        await self._hold(keys=[self._keys.pace(bucket)], args=[until_ms, now_ms])

    @bounded
    async def next_free_ms(self, bucket: str, now_ms: int) -> int:
        stored = await self._redis.get(self._keys.pace(bucket))
        return max(0, int(stored or 0) - now_ms)
