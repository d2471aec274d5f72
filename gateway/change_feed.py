"""With a shared store (Redis): status changes made by other instances, told to this
instance's listeners, so a WebSocket held here hears a payment another instance
received and this HLS gate refuses a session another instance revoked.

Pub/sub delivers at most once and only while subscribed, so every (re)subscription
first reads back from the store what may have been missed: sessions ended early (for
the gate) and the state of every session a socket here watches (for the status hub).
"""

from __future__ import annotations

import asyncio
import logging

from gateway.errors import StoreUnavailable
from gateway.gate.hls_gate import HlsGate
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.sessions import SessionService
from gateway.status_hub import StatusHub
from gateway.store.base import Changes

log = logging.getLogger("gateway.change_feed")

RESUBSCRIBE_DELAYS_S = (0.1, 0.5, 1, 2, 5, 10)


class ChangeFeed:
    def __init__(self, changes: Changes, sessions: SessionService, gate: HlsGate,
                 hub: StatusHub, metrics: Metrics) -> None:
        self._changes = changes
        self._sessions = sessions
        self._gate = gate
        self._hub = hub
        self._metrics = metrics
        self._failures = 0  # in a row, since the feed was last up

    async def run(self) -> None:
        """Follow the store's changes until cancelled, resubscribing after a failure
        with growing delays."""
        self._metrics.change_feed_up = False
        while True:
            try:
                async for session in self._changes.changes(self._catch_up):
                    self._sessions.notify_listeners(session)
            except asyncio.CancelledError:
                raise
            except StoreUnavailable:
                # The store went away (restarted, unreachable): expected, and said
                # once here, without a traceback.
                log_event(log, "store_changes_lost", level=logging.WARNING,
                          after_failures=self._failures)
            except Exception:
                log.exception("lost the store's change feed; resubscribing")
            self._metrics.change_feed_up = False
            delay_s = RESUBSCRIBE_DELAYS_S[min(self._failures, len(RESUBSCRIBE_DELAYS_S) - 1)]
            self._failures += 1
            await asyncio.sleep(delay_s)

    async def _catch_up(self) -> None:
        """Called once subscribed: whatever changed before is read from the store."""
        for session in await self._sessions.ended_early():
            self._gate.session_changed(session)
        for watched in await self._sessions.sessions_by_id(self._hub.watched_session_ids()):
            self._hub.publish_if_changed(watched)
        if self._failures:
            log_event(log, "store_changes_resumed", after_failures=self._failures)
        self._failures = 0
        self._metrics.change_feed_up = True
