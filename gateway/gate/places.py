"""The gate's count of playing devices, kept in memory (SPEC, Devices).

Every playlist and segment request is one place: (grant, client address). A place this
process has reported to the store within REPORT_INTERVAL_MS is let through on a dict
lookup. Only a place new to it, or one whose last report is older, asks the store, which
holds the shared count: a new place waits for the answer, a known one is let through and
reported in the background. Refusals are remembered for the same interval, so a shared
link hammering the gate from many addresses costs the store one question per address
every few seconds, never one per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.clock import Clock
from gateway.device_model import REPORT_INTERVAL_MS, PlaceClaim
from gateway.devices import Devices
from gateway.errors import DeviceLimit, NoAccess
from gateway.logs import log_event

log = logging.getLogger("gateway.gate")

_Place = tuple[str, str]  # (grant id, client address)
_PRUNE_ABOVE = 4096


class PlaceCounter:
    def __init__(self, devices: Devices, clock: Clock) -> None:
        self._devices = devices
        self._clock = clock
        self._limit = devices.max_devices
        self._playing_window_ms = devices.playing_window_ms
        # An attribute, not a property: read on every playlist and segment request.
        self.counting = self._limit > 0
        self._reported: dict[_Place, int] = {}  # when the store last agreed
        self._refused: dict[_Place, int] = {}  # refused without asking until then
        self._ended: dict[str, int] = {}  # grant id -> until when (its token's expiry)
        self._asking: dict[_Place, asyncio.Future[PlaceClaim]] = {}
        self._pruned_at_size = 0
        self.store_reports = 0  # for the bench and the metrics: how often we asked

    def admitted(self, session_id: str, grant_id: str, expires_at_ms: int,
                 address: str, now_ms: int) -> bool:
        """Let through on what this process knows, without waiting? A place reported
        within the interval is; so is one still playing, whose report is then renewed
        in the background. False: `admit()` decides."""
        place = (grant_id, address)
        reported_ms = self._reported.get(place)
        if reported_ms is None:
            return False
        age_ms = now_ms - reported_ms
        if age_ms < REPORT_INTERVAL_MS:
            return True
        if age_ms < self._playing_window_ms:
            if place not in self._asking:
                self._ask(place, session_id, expires_at_ms)  # answered in the background
            return True
        return False

    async def admit(self, session_id: str, grant_id: str, expires_at_ms: int,
                    address: str) -> None:
        """Let a request through, or raise DeviceLimit (places taken) or NoAccess (the
        grant was ended)."""
        now_ms = self._clock()
        if self.admitted(session_id, grant_id, expires_at_ms, address, now_ms):
            return
        place = (grant_id, address)
        if grant_id in self._ended:
            raise NoAccess("grant ended")
        refused_until_ms = self._refused.get(place)
        if refused_until_ms is not None and now_ms < refused_until_ms:
            raise DeviceLimit(max_devices=self._limit)
        claim = await self._ask(place, session_id, expires_at_ms)
        if claim == PlaceClaim.ENDED:
            raise NoAccess("grant ended")
        if claim == PlaceClaim.FULL:
            raise DeviceLimit(max_devices=self._limit)

    def _ask(self, place: _Place, session_id: str, expires_at_ms: int
             ) -> asyncio.Future[PlaceClaim]:
        """One question to the store per place at a time, however many requests wait."""
        asking = self._asking.get(place)
        if asking is None:
            asking = asyncio.ensure_future(self._report(place, session_id, expires_at_ms))
            self._asking[place] = asking
            asking.add_done_callback(lambda _: self._asking.pop(place, None))
        return asyncio.shield(asking)

    async def _report(self, place: _Place, session_id: str, expires_at_ms: int
                      ) -> PlaceClaim:
        grant_id, address = place
        self.store_reports += 1
        try:
            claim = await self._devices.claim(session_id, grant_id, address)
        except Exception:
            # The store is down: a paid viewer keeps playing, uncounted, and the place
            # is asked about again at the next interval.
            log.exception("could not report a playing device; letting it through")
            claim = PlaceClaim.ADMITTED
        now_ms = self._clock()
        if claim == PlaceClaim.ADMITTED:
            self._reported[place] = now_ms
            self._refused.pop(place, None)
        elif claim == PlaceClaim.FULL:
            self._reported.pop(place, None)
            self._refused[place] = now_ms + REPORT_INTERVAL_MS
            log_event(log, "device_limit", sessionId=session_id, where="gate")
        else:
            self.grant_ended(grant_id, expires_at_ms)
        self._prune(now_ms)
        return claim

    def grant_ended(self, grant_id: str, until_ms: int) -> None:
        """Refuse a grant from now on (ended here, or the store said so)."""
        self._ended[grant_id] = until_ms
        for place in [place for place in self._reported if place[0] == grant_id]:
            del self._reported[place]

    def _prune(self, now_ms: int) -> None:
        size = len(self._reported) + len(self._refused) + len(self._ended)
        if size < max(_PRUNE_ABOVE, 2 * self._pruned_at_size):
            return
        self._reported = {place: at for place, at in self._reported.items()
                          if now_ms - at < self._playing_window_ms}
        self._refused = {place: until for place, until in self._refused.items()
                         if until > now_ms}
        self._ended = {grant: until for grant, until in self._ended.items() if until > now_ms}
        self._pruned_at_size = len(self._reported) + len(self._refused) + len(self._ended)

    async def close(self) -> None:
        for asking in list(self._asking.values()):
            asking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asking
