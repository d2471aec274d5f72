"""Redis's ended console sign-ins: a key each, expiring when the cookie would have."""

from __future__ import annotations

from gateway.store.base import SignIns
from gateway.store.redis.client import Part, bounded


class RedisSignIns(Part, SignIns):
    @bounded
    async def end(self, sign_in_id: str, until_ms: int, now_ms: int) -> None:
        if until_ms > now_ms:
            await self._redis.set(self._keys.ended_sign_in(sign_in_id), "1",
                                  px=until_ms - now_ms)

    @bounded
    async def is_ended(self, sign_in_id: str, now_ms: int) -> bool:
        return bool(await self._redis.exists(self._keys.ended_sign_in(sign_in_id)))
