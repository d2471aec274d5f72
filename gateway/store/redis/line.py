"""Redis's line of buyers waiting for a QR: a sorted set of members ("userId\\n
streamId") scored by fair score and arrival, their entries in a hash, the lanes' last
scores (and the line's virtual clock) in another; each change one Lua script, so
every instance shares one line and each entry is popped once. The scripts apply
`line_model.fair_score` as written there."""

from __future__ import annotations

from gateway.line_model import CLOCK_LANE, LineEntry, LinePlace, Standing, is_settled
from gateway.store.base import Line
from gateway.store.redis.client import Client, Part, bounded

# A member's score is fair score * 2^21 + arrival mod 2^21: exact in a double up to
# fair scores of 2^32, and ordered by arrival between equal fair scores.
_ARRIVAL_SPAN = 2 ** 21

# KEYS line, entries, lanes, seq; ARGV member, address, now_ms, front (0/1), clock lane.
# Returns the position, whether joined now, the stored entry and the line's clock.
_JOIN = f"""
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
local clock = tonumber(redis.call('HGET', KEYS[3], ARGV[5]) or '0')
if rank then return {{rank + 1, 0, redis.call('HGET', KEYS[2], ARGV[1]), clock}} end
local last = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
local score
if ARGV[4] == '1' then score = clock - 1 else score = math.max(clock, last) + 1 end
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[3], ARGV[2], math.max(last, score))
local entry = ARGV[2] .. '\\n' .. ARGV[3] .. '\\n' .. score .. '\\n' .. seq
redis.call('HSET', KEYS[2], ARGV[1], entry)
redis.call('ZADD', KEYS[1], score * {_ARRIVAL_SPAN} + seq % {_ARRIVAL_SPAN}, ARGV[1])
return {{redis.call('ZRANK', KEYS[1], ARGV[1]) + 1, 1, entry, clock}}
"""
# KEYS line, entries, lanes; ARGV clock lane.
_POP = """
local head = redis.call('ZRANGE', KEYS[1], 0, 0)
if #head == 0 then return false end
local member = head[1]
local entry = redis.call('HGET', KEYS[2], member)
redis.call('ZREM', KEYS[1], member)
redis.call('HDEL', KEYS[2], member)
local address, joined, score = string.match(entry, '^(.-)\\n(%d+)\\n(-?%d+)\\n')
score = tonumber(score)
local clock = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if score > clock then redis.call('HSET', KEYS[3], ARGV[1], score) end
if tonumber(redis.call('HGET', KEYS[3], address) or '0') <= score then
  redis.call('HDEL', KEYS[3], address)
end
return {member, entry}
"""
# KEYS line, entries, lanes; ARGV member, entry, member score, address, fair score.
_PUT_BACK = """
if redis.call('ZADD', KEYS[1], 'NX', ARGV[3], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[3], ARGV[4]) or '0')
if tonumber(ARGV[5]) > last then redis.call('HSET', KEYS[3], ARGV[4], ARGV[5]) end
return 1
"""


def _member(user_id: str, stream_id: str) -> str:
    return f"{user_id}\n{stream_id}"


def _entry(member: str, stored: str) -> LineEntry:
    user_id, stream_id = member.split("\n", 1)
    address, joined_at_ms, score, seq = stored.split("\n")
    return LineEntry(user_id, stream_id, address, int(joined_at_ms), int(score), int(seq))


def _stored(entry: LineEntry) -> str:
    return f"{entry.address}\n{entry.joined_at_ms}\n{entry.score}\n{entry.seq}"


class RedisLine(Part, Line):
    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._join = client.redis.register_script(_JOIN)
        self._pop = client.redis.register_script(_POP)
        self._put_back = client.redis.register_script(_PUT_BACK)

    @bounded
    async def join(self, user_id: str, stream_id: str, address: str, now_ms: int,
                   *, front: bool = False) -> LinePlace:
        keys = self._keys
        member = _member(user_id, stream_id)
        position, joined, stored, clock = await self._join(
            keys=[keys.line, keys.line_entries, keys.line_lanes, keys.line_seq],
            args=[member, address, now_ms, "1" if front else "0", CLOCK_LANE])
        entry = _entry(member, stored)
        return LinePlace(entry, int(position), bool(int(joined)),
                         is_settled(entry.score, int(clock)))

    @bounded
    async def standings(self, members: list[tuple[str, str]]
                        ) -> dict[tuple[str, str], Standing]:
        if not members:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(self._keys.line_lanes, CLOCK_LANE)
            for user_id, stream_id in members:
                pipe.zrank(self._keys.line, _member(user_id, stream_id))
                pipe.zscore(self._keys.line, _member(user_id, stream_id))
            clock, *found = await pipe.execute()
        virtual_clock = int(clock or 0)
        return {member: Standing(int(rank) + 1,
                                 is_settled(int(score) // _ARRIVAL_SPAN, virtual_clock))
                for member, rank, score in zip(members, found[::2], found[1::2], strict=True)
                if rank is not None}

    @bounded
    async def length(self) -> int:
        return int(await self._redis.zcard(self._keys.line))

    @bounded
    async def pop(self) -> LineEntry | None:
        keys = self._keys
        popped = await self._pop(keys=[keys.line, keys.line_entries, keys.line_lanes],
                                 args=[CLOCK_LANE])
        if not popped:
            return None
        member, stored = popped
        return _entry(member, stored)

    @bounded
    async def put_back(self, entry: LineEntry) -> None:
        keys = self._keys
        await self._put_back(
            keys=[keys.line, keys.line_entries, keys.line_lanes],
            args=[_member(entry.user_id, entry.stream_id), _stored(entry),
                  entry.score * _ARRIVAL_SPAN + entry.seq % _ARRIVAL_SPAN, entry.address,
                  entry.score])

    @bounded
    async def leave(self, user_id: str, stream_id: str) -> None:
        member = _member(user_id, stream_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._keys.line, member)
            pipe.hdel(self._keys.line_entries, member)
            await pipe.execute()
