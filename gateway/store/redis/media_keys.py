"""Redis's media keys: one string per stream and key id, the 16 bytes as hex. A key is
made with SET NX and read back with GET in one MULTI, so of the instances racing to
make it, the first write wins and every one of them reads the winner.

Each lives `MEDIA_KEY_TTL_S` (31 days) from when it was made: longer than the longest
access window (30 days), so a key a playlist named when a viewer's window opened is
still there at its end. A live playlist names a key for as long as its segments are in
the window (minutes, or the hours of a DVR window); keys delivery never makes an old
live key again, so a key that expired under a very long DVR window drops its segments
from the playlist instead. A finished (VOD) playlist served for longer than that gets
new keys for its old ids."""

from __future__ import annotations

from gateway.store.base import MediaKeys
from gateway.store.redis.client import Part, bounded

MEDIA_KEY_TTL_S = 31 * 86400


class RedisMediaKeys(Part, MediaKeys):
    @bounded
    async def get(self, stream_id: str, key_id: str) -> bytes | None:
        stored = await self._redis.get(self._keys.media_key(stream_id, key_id))
        return None if stored is None else bytes.fromhex(stored)

    @bounded
    async def create(self, stream_id: str, key_id: str, key: bytes) -> bytes:
        name = self._keys.media_key(stream_id, key_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(name, key.hex(), nx=True, ex=MEDIA_KEY_TTL_S)
            pipe.get(name)
            _, stored = await pipe.execute()
        return bytes.fromhex(stored)
