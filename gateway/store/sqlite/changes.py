"""The change feed of an embedded store: there is none. Its one process hears its own
changes from SessionService directly; there are no other instances to tell."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from gateway.model import PaymentSession
from gateway.store.base import Changes


class NoChanges(Changes):
    shared = False

    async def publish(self, session: PaymentSession) -> None:
        return None  # nobody else to tell

    def changes(self, on_subscribed: Callable[[], Awaitable[None]]
                ) -> AsyncIterator[PaymentSession]:
        raise NotImplementedError("an embedded store has no other instances to follow")
