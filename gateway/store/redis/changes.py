"""Redis's change feed: every status change is published on one channel per key prefix,
so a viewer's WebSocket held by one instance hears a payment that another instance
received, and every instance's HLS gate learns of a revocation. Pub/sub delivers at
most once and only while subscribed: followers resync from the store (ChangeFeed)."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from gateway.errors import StoreUnavailable
from gateway.model import PaymentSession
from gateway.store.base import Changes
from gateway.store.redis.client import Client, Part, bounded
from gateway.store.redis.rows import session_fields, session_from_fields

log = logging.getLogger("gateway.store.redis")


class RedisChanges(Part, Changes):
    shared = True

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        # Lets an instance skip its own changes when they come back from the channel.
        self.instance_id = uuid.uuid4().hex

    @bounded
    async def publish(self, session: PaymentSession) -> None:
        message = {"from": self.instance_id, "session": session_fields(session)}
        await self._redis.publish(self._keys.changes, json.dumps(message))

    async def changes(self, on_subscribed: Callable[[], Awaitable[None]]
                      ) -> AsyncIterator[PaymentSession]:
        pubsub = self._client.feed.pubsub(ignore_subscribe_messages=True)
        try:
            async for session in self._listen(pubsub, on_subscribed):
                yield session
        except (RedisError, OSError):
            raise StoreUnavailable() from None  # the caller resubscribes
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    async def _listen(self, pubsub: Any, on_subscribed: Callable[[], Awaitable[None]]
                      ) -> AsyncIterator[PaymentSession]:
        await pubsub.subscribe(self._keys.changes)
        await on_subscribed()
        async for message in pubsub.listen():
            if message.get("type") != "message":
                continue
            try:
                decoded = json.loads(message["data"])
                if decoded.get("from") == self.instance_id:
                    continue
                session = session_from_fields(decoded["session"])
            except (ValueError, KeyError, TypeError):
                log.warning("ignored a malformed session change message")
                continue
            if session is not None:
                yield session
