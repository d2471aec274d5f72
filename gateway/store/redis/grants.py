"""Redis's device grants: one hash per grant, a pointer per purchase and device to its
current grant, an index of a purchase's grants, and one hash of places per purchase:
"<grant id>|<address>" -> "<first seen ms>:<last seen ms>" (times stay strings: Lua's
numbers would print 1.8e+12).

Making and ending a grant are small scripts that decide nothing: each is one atomic
step on keys the grant's own hash names (`pointer_key`, `places_key`), in one round
trip. Claiming a place is the model's decision (`device_model.decide_claim`), so it is
a WATCH transaction over the grant and the purchase's places.
"""

from __future__ import annotations

from collections.abc import Collection

from gateway.device_model import DeviceGrant, DevicePlace, PlaceClaim, decide_claim
from gateway.store.base import DeviceGrants
from gateway.store.redis.client import Client, Part, Pipeline, bounded
from gateway.store.redis.rows import pairs

# KEYS: the device's grant pointer, the new grant's hash, the session's grant index, the
# session's places. ARGV: new grant id, session id, device, now, the prefix of grant
# hashes. Returns the grant's fields and the session's places.
_GRANT_FOR_DEVICE = """
local places = redis.call('HGETALL', KEYS[4])
local current = redis.call('GET', KEYS[1])
if current then
  local fields = redis.call('HGETALL', ARGV[5] .. current)
  if #fields > 0 then return {fields, places} end
end
redis.call('HSET', KEYS[2], 'grant_id', ARGV[1], 'session_id', ARGV[2], 'device', ARGV[3],
           'created_at_ms', ARGV[4], 'ended_at_ms', '', 'pointer_key', KEYS[1],
           'places_key', KEYS[4])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return {redis.call('HGETALL', KEYS[2]), places}
"""

# KEYS: the grant's hash. ARGV: now.
_END_GRANT = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return fields end
local grant = {}
for i = 1, #fields, 2 do grant[fields[i]] = fields[i + 1] end
if grant['ended_at_ms'] == '' then
  redis.call('HSET', KEYS[1], 'ended_at_ms', ARGV[1])
  if redis.call('GET', grant['pointer_key']) == grant['grant_id'] then
    redis.call('DEL', grant['pointer_key'])
  end
  local mine = grant['grant_id'] .. '|'
  for _, member in ipairs(redis.call('HKEYS', grant['places_key'])) do
    if member:sub(1, #mine) == mine then redis.call('HDEL', grant['places_key'], member) end
  end
end
return redis.call('HGETALL', KEYS[1])
"""

# The places of a purchase nobody plays any more go by themselves, well after they count.
_PLACES_TTL_MS = 10 * 60 * 1000


class RedisGrants(Part, DeviceGrants):
    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._grant_for_device = client.redis.register_script(_GRANT_FOR_DEVICE)
        self._end_grant = client.redis.register_script(_END_GRANT)

    @bounded
    async def grant_for_device(self, session_id: str, device: str, now_ms: int,
                               new_grant_id: str, playing_since_ms: int
                               ) -> tuple[DeviceGrant, list[DevicePlace]]:
        keys = self._keys
        fields, places = await self._grant_for_device(
            keys=[keys.device_grant(session_id, device), keys.grant(new_grant_id),
                  keys.session_grants(session_id), keys.places(session_id)],
            args=[new_grant_id, session_id, device, now_ms, keys.grant("")])
        grant = _grant(pairs(fields))
        assert grant is not None
        return grant, _playing(pairs(places), playing_since_ms)

    @bounded
    async def get_grant(self, grant_id: str) -> DeviceGrant | None:
        return _grant(await self._redis.hgetall(self._keys.grant(grant_id)))

    @bounded
    async def grants(self, session_id: str) -> list[DeviceGrant]:
        ids = await self._redis.zrange(self._keys.session_grants(session_id), 0, -1)
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for grant_id in ids:
                pipe.hgetall(self._keys.grant(grant_id))
            rows: list[dict[str, str]] = await pipe.execute()
        return sorted((grant for grant in map(_grant, rows) if grant is not None),
                      key=lambda grant: (grant.created_at_ms, grant.grant_id))

    @bounded
    async def end_grant(self, grant_id: str, now_ms: int) -> DeviceGrant | None:
        return _grant(pairs(await self._end_grant(keys=[self._keys.grant(grant_id)],
                                                  args=[now_ms])))

    @bounded
    async def claim_place(self, session_id: str, grant_id: str, address: str, now_ms: int,
                          since_ms: int, limit: int) -> PlaceClaim:
        places_key, grant_key = self._keys.places(session_id), self._keys.grant(grant_id)

        async def claim(pipe: Pipeline) -> PlaceClaim:
            await pipe.watch(places_key, grant_key)
            # Both read in one round trip on another connection: the WATCH, already in
            # place, covers them whichever connection read them.
            async with self._redis.pipeline(transaction=False) as reads:
                reads.hgetall(grant_key)
                reads.hgetall(places_key)
                grant_fields, held = await reads.execute()
            decision = decide_claim(session_id, _grant(grant_fields), _places(held), address,
                                    now_ms, since_ms, limit)
            if decision.write is None and not decision.forget:
                return decision.claim
            pipe.multi()
            if decision.forget:
                pipe.hdel(places_key, *(f"{place.grant_id}|{place.address}"
                                        for place in decision.forget))
            if decision.write is not None:
                place = decision.write
                pipe.hset(places_key, f"{place.grant_id}|{place.address}",
                          f"{place.first_seen_ms}:{place.last_seen_ms}")
                pipe.pexpire(places_key, _PLACES_TTL_MS)
            return decision.claim

        return await self._client.transaction(claim)

    @bounded
    async def playing(self, session_id: str, since_ms: int) -> list[DevicePlace]:
        return _playing(await self._redis.hgetall(self._keys.places(session_id)), since_ms)

    @bounded
    async def playing_counts(self, session_ids: Collection[str], since_ms: int
                             ) -> dict[str, int]:
        ids = list(session_ids)
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hgetall(self._keys.places(session_id))
            held: list[dict[str, str]] = await pipe.execute()
        counts = {session_id: len(_playing(places, since_ms))
                  for session_id, places in zip(ids, held, strict=True)}
        return {session_id: count for session_id, count in counts.items() if count}


def _grant(fields: dict[str, str]) -> DeviceGrant | None:
    if not fields:
        return None
    return DeviceGrant(
        grant_id=fields["grant_id"], session_id=fields["session_id"],
        device=fields["device"], created_at_ms=int(fields["created_at_ms"]),
        ended_at_ms=int(fields["ended_at_ms"]) if fields["ended_at_ms"] else None)


def _places(held: dict[str, str]) -> list[DevicePlace]:
    """The places of a places hash, as stored."""
    places = []
    for field, seen in held.items():
        grant_id, _, address = field.partition("|")
        first, _, last = seen.partition(":")
        places.append(DevicePlace(grant_id, address, int(first), int(last)))
    return places


def _playing(held: dict[str, str], since_ms: int) -> list[DevicePlace]:
    """The places of a places hash last seen after `since_ms`, longest playing first."""
    return sorted((place for place in _places(held) if place.last_seen_ms > since_ms),
                  key=lambda place: (place.first_seen_ms, place.grant_id, place.address))
