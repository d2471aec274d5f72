"""The line (SPEC, "A crowd at the start of a show"): buyers are queued, never refused,
while the provider's pace is used up or their address is over its share.

- Pacing: every provider create call, on every instance and worker, takes a moment of
  one shared paced bucket in the store (`Counters.reserve`): one call every
  60,600 / GATEWAY_PROVIDER_RATE_PER_MINUTE ms (PACE_SLACK_MS), so no window of any
  length (the provider may count in a sliding one, Xendit does) holds more than its
  share, and a moment missed by a late wake-up is still taken (CATCH_UP_MS). A
  provider's 429 holds the bucket for everyone until its Retry-After.
- Who waits: a buyer whose address is over GATEWAY_QR_RATE_PER_ADDRESS; and, with a
  capped provider, everyone while anyone waits (newcomers never overtake the line) or
  while no moment is free. A buyer in line asking again keeps their place.
- The line is fair by address (line_model.py) and drained by every instance: take a
  moment, pop the head (one instance gets each entry), make the session by the same
  code as a direct request (SessionService.request_qr: rule 1 holds). Without a
  provider cap the line holds only addresses' overflow, served at
  GATEWAY_QUEUE_RATE_PER_MINUTE.
- The ETA is the wait for the next free moment (a 429's pause included) plus one
  interval per buyer ahead: an estimate for a place nobody can overtake any more, and
  the least wait (`etaAtLeast`) for one that later buyers from other addresses may
  still go ahead of (line_model.is_settled).
- The viewer hears of their place and of their QR over the WebSocket
  (`LineWatchers`): standings are read for the places due each tick, and a QR
  made by any instance reaches them through the store's change feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.clock import Clock
from gateway.errors import (
    AlreadyHasAccess,
    GatewayError,
    ProviderRateLimited,
    ProviderUnavailable,
    StoreUnavailable,
)
from gateway.limits import SessionCreationLimits
from gateway.line_model import LineEntry, LinePlace, Standing
from gateway.logs import log_event
from gateway.model import PaymentSession, SessionStatus
from gateway.sessions import SessionService
from gateway.store.base import Counters, Line

log = logging.getLogger("gateway.line")

PROVIDER_BUCKET = "provider-create"  # the paced bucket of provider create calls
LINE_BUCKET = "line"  # the line's own pace when the provider has no cap
MAX_WAIT_MS = 1000  # a drain loop looks again at least this often (a pause may end)
IDLE_POLL_S = 0.25  # an empty line is looked at this often (a local join wakes it at once)
MAX_SERVING = 64  # provider calls under way from one instance's line at once
UNAVAILABLE_PAUSE_S = 1.0  # after a provider failure, before the line is served again
DEFAULT_RETRY_AFTER_S = 5  # a 429 that does not say when to come back
# Of each provider minute this much is left unused. Half of it lets a drain woken late
# (a busy event loop, a store trip) still take the moment it missed instead of losing
# it (CATCH_UP_MS); the other half absorbs how unevenly the calls then travel to the
# provider. With both, no sliding minute at the provider holds more than its cap, and
# the pace uses 1% less than the cap instead of losing every late wake-up's slip.
PACE_SLACK_MS = 600
CATCH_UP_MS = PACE_SLACK_MS // 2


def provider_pace(rate_per_minute: int) -> tuple[int, int]:
    """The pace of create calls under a provider's cap: (interval_ms, catch_up_ms)."""
    return -(-(60_000 + PACE_SLACK_MS) // rate_per_minute), CATCH_UP_MS


@dataclass(frozen=True, slots=True)
class Waiting:
    """A buyer's place in line, as the API and the WebSocket tell it."""

    stream_id: str
    position: int
    eta_seconds: int
    # Buyers arriving later from other addresses may still go ahead (the place is
    # behind others from the buyer's own address): the wait is at least eta_seconds.
    eta_at_least: bool = False

    def json(self) -> dict[str, Any]:
        return {"queued": True, "streamId": self.stream_id, "position": self.position,
                "etaSeconds": self.eta_seconds, "etaAtLeast": self.eta_at_least}


class _Queued(Exception):
    """Raised from the admission check inside SessionService.request_qr: no session is
    made now, the buyer waits (caught in QrLine.request_qr, never seen by HTTP)."""

    def __init__(self, waiting: Waiting) -> None:
        super().__init__("queued")
        self.waiting = waiting


class QrLine:
    def __init__(self, sessions: SessionService, line: Line, counters: Counters,
                 limits: SessionCreationLimits, clock: Clock, *,
                 provider_rate_per_minute: int, queue_rate_per_minute: int) -> None:
        self._sessions = sessions
        self._line = line
        self._counters = counters
        self._limits = limits
        self._clock = clock
        self.capped = provider_rate_per_minute > 0
        self.interval_ms, self._catch_up_ms = (
            provider_pace(provider_rate_per_minute) if self.capped
            else (max(1, 60_000 // queue_rate_per_minute), 0))  # only we count our own
        self._bucket = PROVIDER_BUCKET if self.capped else LINE_BUCKET
        self._work = asyncio.Event()  # set when this instance puts someone in line
        self._busy = False  # the last moment this instance took served someone
        self._serving: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_SERVING)
        self.served = 0  # QRs made from the line by this instance
        # Told of each session the line makes (metrics count it as a direct one).
        self.on_made: Callable[[PaymentSession], None] = lambda session: None
        # Raises when a stream cannot be sold now (offline, cancelled, ended): checked
        # when a buyer asks, and again as their turn comes (a line can outlast an origin).
        self.ensure_buyable: Callable[[str], None] = lambda stream_id: None
        # Told of each buyer the line lets go without a QR (their page asks again and
        # hears why).
        self.on_dropped: Callable[[LineEntry], None] = lambda entry: None

    async def request_qr(self, user_id: str, stream_id: str, amount: int | None,
                         address: str | None) -> tuple[PaymentSession, bool] | Waiting:
        """Rules 1-2 as SessionService.request_qr, or a place in line. A stream that
        cannot be sold now is refused before either (and again at each turn)."""
        self.ensure_buyable(stream_id)

        async def admit() -> None:
            waiting = await self._admit(user_id, stream_id, address or "unknown")
            if waiting is not None:
                raise _Queued(waiting)

        try:
            return await self._sessions.request_qr(user_id, stream_id, amount, admit=admit)
        except _Queued as queued:
            return queued.waiting
        except ProviderRateLimited as slow_down:
            # Nothing was made: the buyer goes to the head of the line.
            await self._hold(slow_down)
            place = await self._line.join(user_id, stream_id, address or "unknown",
                                          self._clock(), front=True)
            self._work.set()
            return await self._waiting(place)

    async def _admit(self, user_id: str, stream_id: str, address: str) -> Waiting | None:
        """None: make the session now (a provider moment is taken). Else the place.
        Asking again keeps the place and counts against no limit (joining is
        idempotent); the limits count what would make a provider transaction now."""
        if self.capped:
            if await self._line.length():  # nobody overtakes the line
                return await self._join(user_id, stream_id, address, over=False)
        else:
            held = await self._line.standings([(user_id, stream_id)])
            if held:
                return await self.waiting_at(stream_id, held[(user_id, stream_id)])
        await self._limits.admit_viewer(user_id)  # one identity hammering: 429
        over = await self._limits.address_over(address)
        if not over and (not self.capped or await self._reserve_now() is not None):
            return None
        return await self._join(user_id, stream_id, address, over=over)

    async def _join(self, user_id: str, stream_id: str, address: str, *, over: bool
                    ) -> Waiting:
        place = await self._line.join(user_id, stream_id, address, self._clock())
        if place.joined:
            log_event(log, "buyer_queued", streamId=stream_id, position=place.position,
                      addressOver=over)
            self._work.set()
        return await self._waiting(place)

    async def _waiting(self, place: LinePlace) -> Waiting:
        return await self.waiting_at(place.entry.stream_id, place.standing)

    async def waiting_at(self, stream_id: str, standing: Standing) -> Waiting:
        """The place for the stream, with its ETA."""
        return self.place(stream_id, standing, await self.next_free_ms())

    async def next_free_ms(self) -> int:
        """How long until the provider's (or the line's) next free moment."""
        return await self._counters.next_free_ms(self._bucket, self._clock())

    def place(self, stream_id: str, standing: Standing, next_free_ms: int) -> Waiting:
        """The place, with its ETA: the head is served at the next free moment (after a
        provider's 429, when its pause ends), then one interval per buyer ahead. Exact
        for a settled place; for one that may still be overtaken, the least wait."""
        eta_ms = next_free_ms + (standing.position - 1) * self.interval_ms
        return Waiting(stream_id, standing.position, -(-eta_ms // 1000),
                       eta_at_least=not standing.settled)

    async def standings(self, members: list[tuple[str, str]]
                        ) -> dict[tuple[str, str], Standing]:
        return await self._line.standings(members)

    async def _reserve_now(self) -> int | None:
        """A moment of the pace that is free now (or was missed by at most the
        catch-up), or None."""
        return await self._counters.reserve(self._bucket, self.interval_ms, self._clock(),
                                            0, catch_up_ms=self._catch_up_ms)

    async def _hold(self, slow_down: ProviderRateLimited) -> None:
        retry_after_s = int(slow_down.params.get("retry_after_s") or DEFAULT_RETRY_AFTER_S)
        now_ms = self._clock()
        log_event(log, "provider_rate_limited", level=logging.WARNING,
                  retryAfterSeconds=retry_after_s)
        await self._counters.hold(self._bucket, now_ms + retry_after_s * 1000, now_ms)

    # --- draining -------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the line until cancelled (on every instance: each pop is atomic)."""
        while True:
            try:
                await self._serve_one()
            except StoreUnavailable:  # said once by the store; the next round catches up
                await asyncio.sleep(UNAVAILABLE_PAUSE_S)
            except Exception:  # a bad round must not end the line
                log.exception("serving the line failed")
                await asyncio.sleep(UNAVAILABLE_PAUSE_S)

    async def _serve_one(self) -> None:
        # While the last round served someone, straight to the next moment: every store
        # trip between a moment coming free and taking it would slow the pace down.
        if not self._busy and await self._line.length() == 0:
            self._work.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._work.wait(), IDLE_POLL_S)
            return
        # Only a moment that is free now: so the next free moment is always the head's,
        # and the ETA can say when that is.
        if await self._reserve_now() is None:
            wait_ms = await self._counters.next_free_ms(self._bucket, self._clock())
            await asyncio.sleep(min(max(wait_ms, 1), MAX_WAIT_MS) / 1000)
            return
        await self._slots.acquire()
        try:
            entry = await self._line.pop()
        except BaseException:
            self._slots.release()
            raise
        self._busy = entry is not None
        if entry is None:  # another instance served the last one
            self._slots.release()
            return
        task = asyncio.create_task(self._serve(entry), name="line-serve")
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, entry: LineEntry) -> None:
        try:
            self.ensure_buyable(entry.stream_id)
            session, created = await self._sessions.request_qr(entry.user_id,
                                                               entry.stream_id, None)
        except ProviderRateLimited as slow_down:
            await self._line.put_back(entry)
            await self._hold(slow_down)
            return
        except (ProviderUnavailable, StoreUnavailable):
            # Nothing made; the buyer keeps their place until the provider is back.
            await self._line.put_back(entry)
            await asyncio.sleep(UNAVAILABLE_PAUSE_S)
            return
        except AlreadyHasAccess:
            return  # paid meanwhile (another device): nothing to make
        except GatewayError as refused:
            log_event(log, "line_entry_dropped", level=logging.WARNING,
                      streamId=entry.stream_id, code=refused.code)
            self.on_dropped(entry)
            return
        finally:
            self._slots.release()
        waited_ms = self._clock() - entry.joined_at_ms
        log_event(log, "buyer_served", sessionId=session.session_id, streamId=entry.stream_id,
                  waitedMs=waited_ms, created=created)
        if created:
            self.served += 1
            self.on_made(session)
            await self._sessions.announce(session)  # to the viewer, on whichever instance

    async def close(self) -> None:
        for task in list(self._serving):
            task.cancel()
        if self._serving:
            await asyncio.wait(self._serving)


# --- the viewer's WebSocket while in line --------------------------------------------

TICK_S = 0.5
# A place is said again as the position and ETA move: every REPEAT_AFTER_S near the
# front, less often (up to REPEAT_AFTER_MAX_S) the longer the wait, since the page
# counts the wait down by itself in between. 10,000 buyers in line then cost about
# 1,000 messages a second instead of 5,000, at a show's busiest minute.
REPEAT_AFTER_S = 2.0
REPEAT_AFTER_MAX_S = 10.0
# Out of line and no session for this long: the line gave up on them (say so).
GONE_AFTER_S = 30.0


def repeat_after_s(eta_seconds: int) -> float:
    """How soon a place with this wait is said again: a twentieth of the wait, within
    REPEAT_AFTER_S and REPEAT_AFTER_MAX_S."""
    return min(REPEAT_AFTER_MAX_S, max(REPEAT_AFTER_S, eta_seconds / 20))


@dataclass(slots=True)
class _Place:
    sockets: set[web.WebSocketResponse]
    said_at_s: float = 0.0
    repeat_after_s: float = REPEAT_AFTER_S
    missing_since_s: float | None = None


class LineWatchers:
    """WebSockets of buyers in line, by (userId, streamId): their place and ETA on every
    change (and every REPEAT_AFTER_S), then their QR, the moment it is made."""

    def __init__(self, line: QrLine, sessions: SessionService, clock: Clock,
                 qr_json: Callable[[PaymentSession, int], dict[str, Any]]) -> None:
        self._line = line
        self._sessions = sessions
        self._clock = clock
        self._qr_json = qr_json
        self._places: dict[tuple[str, str], _Place] = {}

    async def watch(self, ws: web.WebSocketResponse, user_id: str, stream_id: str) -> bool:
        """Subscribe `ws` to the viewer's place for the stream and tell it where they
        stand. False when they are neither in line nor hold a pending QR."""
        member = (user_id, stream_id)
        place = self._places.setdefault(member, _Place(set()))
        place.sockets.add(ws)
        try:
            told = await self._tell(member, place, force=True)
        except BaseException:
            self.unwatch(ws, user_id, stream_id)
            raise
        if not told:
            self.unwatch(ws, user_id, stream_id)
        return told

    def unwatch(self, ws: web.WebSocketResponse, user_id: str, stream_id: str) -> None:
        place = self._places.get((user_id, stream_id))
        if place is None:
            return
        place.sockets.discard(ws)
        if not place.sockets:
            del self._places[(user_id, stream_id)]

    def session_made(self, session: PaymentSession) -> None:
        """A status listener: a pending session is pushed to the places waiting for it."""
        if session.status != SessionStatus.PENDING:
            return
        place = self._places.pop((session.user_id, session.stream_id), None)
        if place is not None:
            self._send(place, self._qr_message(session))

    def dropped(self, entry: LineEntry) -> None:
        """The line let the buyer go without a QR (the stream cannot be sold now): their
        page hears it at once, asks again, and is told why."""
        place = self._places.pop((entry.user_id, entry.stream_id), None)
        if place is not None:
            self._send(place, json.dumps({"type": "queue", "streamId": entry.stream_id,
                                          "position": 0, "etaSeconds": 0, "gone": True}))

    @property
    def watched(self) -> int:
        return len(self._places)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self._tick()
            except StoreUnavailable:
                pass
            except Exception:  # a bad round must not end the updates
                log.exception("line updates failed")

    async def _tick(self) -> None:
        # Each place is told again after its own period (`repeat_after_s`; its QR comes
        # at once through `session_made`): thousands waiting cost a message each per
        # period, not one per QR made.
        now_s = time.monotonic()
        members = [member for member, place in self._places.items()
                   if now_s - place.said_at_s >= place.repeat_after_s]
        if not members:
            return
        standings = await self._line.standings(members)
        free_ms = await self._line.next_free_ms()  # once a tick, for every place
        for member in members:
            place = self._places.get(member)
            if place is not None:
                await self._tell(member, place, standings.get(member), free_ms)

    async def _tell(self, member: tuple[str, str], place: _Place,
                    standing: Standing | None = None, free_ms: int = 0, *,
                    force: bool = False) -> bool:
        if standing is None and force:
            standing = (await self._line.standings([member])).get(member)
            free_ms = await self._line.next_free_ms()
        now_s = time.monotonic()
        if standing is not None:
            place.missing_since_s = None
            waiting = self._line.place(member[1], standing, free_ms)
            message = json.dumps(waiting.json() | {"type": "queue"}, separators=(",", ":"))
            place.said_at_s = now_s
            place.repeat_after_s = repeat_after_s(waiting.eta_seconds)
            self._send(place, message)
            return True
        # Out of line: served (the QR is ours to show), or being served right now.
        session = await self._pending(member)
        if session is not None:
            self._places.pop(member, None)
            self._send(place, self._qr_message(session))
            return True
        if force:
            return False
        if place.missing_since_s is None:
            place.missing_since_s = now_s
        elif now_s - place.missing_since_s > GONE_AFTER_S:
            self._places.pop(member, None)
            self._send(place, json.dumps({"type": "queue", "streamId": member[1],
                                          "position": 0, "etaSeconds": 0, "gone": True}))
        return True

    async def _pending(self, member: tuple[str, str]) -> PaymentSession | None:
        now_ms = self._clock()
        for session in await self._sessions.active_for_stream(*member):
            if session.status_at(now_ms) == SessionStatus.PENDING:
                return session
        return None

    def _qr_message(self, session: PaymentSession) -> str:
        return json.dumps({"type": "qr", **self._qr_json(session, self._clock())},
                          separators=(",", ":"))

    def _send(self, place: _Place, message: str) -> None:
        for ws in list(place.sockets):
            if not ws.closed:
                task = asyncio.ensure_future(_send(ws, message))
                _SENDING.add(task)
                task.add_done_callback(_SENDING.discard)


_SENDING: set[asyncio.Future[None]] = set()


async def _send(ws: web.WebSocketResponse, message: str) -> None:
    try:
        await asyncio.wait_for(ws.send_str(message), 5.0)
    except (ConnectionError, RuntimeError, TimeoutError):
        log.debug("line update to a closed or stuck socket dropped")

