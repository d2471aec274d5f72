"""Live status for viewers: every session change, pushed to the WebSockets watching it.

- Changes arrive from the domain's listeners (payment applied, session revoked, the
  sweeper's expiries). Expiry by time is pushed by a timer set to the session's
  `expiresAt`, not at the sweeper's next round, so the page turns the moment access ends.
- Messages leave through one sender task, in order: a viewer never sees an older state
  after a newer one, and one slow socket holds nobody else's message for long.
- Each message is the whole state (SPEC, WebSocket), so a client that missed one is put
  right by the next, or by the snapshot every (re)connection starts with.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from aiohttp import web

from gateway.clock import Clock
from gateway.model import PaymentSession, SessionStatus, status_at
from gateway.session_json import STATUS_MESSAGE_FIELDS, session_json

log = logging.getLogger("gateway.status_hub")
SEND_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class _Watched:
    """What a status message needs of a session, and no more: thousands of these live
    as long as their sockets, so not the whole session (QR payload and all)."""

    session_id: str
    stream_id: str
    status: SessionStatus
    paid_at_ms: int | None
    expires_at_ms: int
    starts_at_ms: int | None
    ended_reason: str | None  # revoked, refunded, cancelled: why it ended early

    @classmethod
    def of(cls, session: PaymentSession) -> _Watched:
        return cls(session.session_id, session.stream_id, session.status,
                   session.paid_at_ms, session.expires_at_ms, session.starts_at_ms,
                   session.ended_reason)

    def status_at(self, now_ms: int) -> SessionStatus:
        return status_at(self.status, self.expires_at_ms, now_ms)


def status_message(session: PaymentSession | _Watched, now_ms: int) -> str:
    return json.dumps({"type": "status",
                       **session_json(session, now_ms, STATUS_MESSAGE_FIELDS)},
                      separators=(",", ":"))


class StatusHub:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._watchers: dict[str, set[web.WebSocketResponse]] = {}
        self._latest: dict[str, _Watched] = {}
        self._expiry_timers: dict[str, asyncio.TimerHandle] = {}
        self._outbox: asyncio.Queue[tuple[tuple[web.WebSocketResponse, ...], str]] = (
            asyncio.Queue())

    def watch(self, ws: web.WebSocketResponse, session: PaymentSession) -> str:
        """Subscribe `ws` to its session; returns the snapshot to send it first."""
        session_id = session.session_id
        self._watchers.setdefault(session_id, set()).add(ws)
        # A change may have been published while the caller was reading the store.
        latest = self._latest.setdefault(session_id, _Watched.of(session))
        self._arm_expiry(latest)
        return status_message(latest, self._clock())

    def unwatch(self, ws: web.WebSocketResponse, session_id: str) -> None:
        watchers = self._watchers.get(session_id)
        if watchers is None:
            return
        watchers.discard(ws)
        if not watchers:
            del self._watchers[session_id]
            self._latest.pop(session_id, None)
            timer = self._expiry_timers.pop(session_id, None)
            if timer is not None:
                timer.cancel()

    def publish(self, session: PaymentSession) -> None:
        """A status listener: called by the domain with a session's new state."""
        if session.session_id not in self._watchers:
            return
        watched = _Watched.of(session)
        self._latest[session.session_id] = watched
        self._arm_expiry(watched)
        self._send(watched)

    def watched_session_ids(self) -> list[str]:
        return list(self._watchers)

    def publish_if_changed(self, session: PaymentSession) -> None:
        """Catching up after a gap in the change feed: push only what is news."""
        latest = self._latest.get(session.session_id)
        if latest is not None and (latest.status, latest.expires_at_ms) == (
                session.status, session.expires_at_ms):
            return
        self.publish(session)

    def _send(self, session: _Watched) -> None:
        watchers = tuple(self._watchers.get(session.session_id, ()))
        if watchers:
            self._outbox.put_nowait((watchers, status_message(session, self._clock())))

    def _arm_expiry(self, session: _Watched) -> None:
        timer = self._expiry_timers.pop(session.session_id, None)
        if timer is not None:
            timer.cancel()
        if session.status_at(self._clock()) == SessionStatus.EXPIRED:
            return
        delay_s = max(0.0, (session.expires_at_ms - self._clock()) / 1000)
        self._expiry_timers[session.session_id] = asyncio.get_running_loop().call_later(
            delay_s, self._expiry_due, session.session_id)

    def _expiry_due(self, session_id: str) -> None:
        self._expiry_timers.pop(session_id, None)
        session = self._latest.get(session_id)
        if session is None:
            return
        if session.status_at(self._clock()) != SessionStatus.EXPIRED:
            self._arm_expiry(session)  # the loop's timer woke a hair early
            return
        self._send(session)

    @property
    def watched_sessions(self) -> int:
        return len(self._watchers)

    async def run_sender(self) -> None:
        while True:
            sockets, payload = await self._outbox.get()
            for ws in sockets:
                if ws.closed:
                    continue
                try:
                    await asyncio.wait_for(ws.send_str(payload), SEND_TIMEOUT_S)
                except (ConnectionError, RuntimeError, TimeoutError):
                    # Its own handler notices the dead connection and cleans up.
                    log.debug("status push to a closed or stuck socket dropped")

    def close(self) -> None:
        for timer in self._expiry_timers.values():
            timer.cancel()
        self._expiry_timers.clear()

