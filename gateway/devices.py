"""The device use cases (SPEC, Devices): a device's grant, moving playback to this
device, ending a grant, a purchase's grants for operators, and the gate's reports of
places. The types and rules they work with are in `gateway/device_model.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.clock import Clock
from gateway.device_model import (
    PLAYING_WINDOW_MS,
    Device,
    DeviceGrant,
    GrantReport,
    PlaceClaim,
    longest_playing,
    new_grant_id,
)
from gateway.errors import DeviceLimit
from gateway.logs import log_event
from gateway.store.base import DeviceGrants

log = logging.getLogger("gateway.devices")


GrantEndedListener = Callable[[DeviceGrant], None]


class Devices:
    """The use cases: a device's grant, moving playback to this device, ending a grant,
    a purchase's grants for operators, and the gate's reports of places."""

    def __init__(self, grants: DeviceGrants, clock: Clock, *, max_devices: int,
                 playing_window_ms: int = PLAYING_WINDOW_MS) -> None:
        self._grants = grants
        self.clock = clock
        self.max_devices = max_devices  # 0: no limit
        # How long a place plays after its last request: longer in keys delivery, where
        # a player asks the service only for each new key.
        self.playing_window_ms = playing_window_ms
        self._listeners: list[GrantEndedListener] = []

    def add_listener(self, listener: GrantEndedListener) -> None:
        """Told of every grant this process ends (the gate drops it at once; other
        instances' gates learn it at their next report)."""
        self._listeners.append(listener)

    async def grant_for(self, session_id: str, device: Device) -> DeviceGrant:
        """This device's grant for a paid session. Refused with `device_limit` when the
        purchase's places are taken and this device is not one of those playing: a
        device that is playing is never refused here."""
        now_ms = self.clock()
        grant, playing = await self._grants.grant_for_device(
            session_id, device.key, now_ms, new_grant_id(), now_ms - self.playing_window_ms)
        if (self.max_devices and len(playing) >= self.max_devices
                and not device.plays_in(grant.grant_id, playing)):
            log_event(log, "device_limit", sessionId=session_id, where="check_access",
                      places=len(playing))
            raise DeviceLimit(max_devices=self.max_devices)
        return grant

    async def watch_here(self, session_id: str, device: Device) -> DeviceGrant:
        """"Watch here instead": when the purchase's places are taken, end the grant of
        the same purchase that has played longest (which may be this browser's own,
        playing somewhere else), and give this device a fresh grant: one no gate has
        refused yet, so it plays at its very next request."""
        now_ms = self.clock()
        current, playing = await self._grants.grant_for_device(
            session_id, device.key, now_ms, new_grant_id(), now_ms - self.playing_window_ms)
        if device.plays_in(current.grant_id, playing):
            return current  # playing here already
        if self.max_devices and len(playing) >= self.max_devices:
            victim = longest_playing(playing)
            if victim is not None:
                await self.end_grant(victim, reason="watched_elsewhere")
        await self.end_grant(current.grant_id, reason="replaced")
        fresh, _ = await self._grants.grant_for_device(session_id, device.key, now_ms,
                                                       new_grant_id(), now_ms)
        return fresh

    async def end_grant(self, grant_id: str, *, reason: str) -> DeviceGrant | None:
        """End one grant now: its places are freed, and the gate refuses it from its next
        request (on another instance, within REPORT_INTERVAL_MS). None if unknown."""
        ended = await self._grants.end_grant(grant_id, self.clock())
        if ended is None:
            return None
        log_event(log, "grant_ended", grantId=grant_id, sessionId=ended.session_id,
                  reason=reason)
        for listener in self._listeners:
            try:
                listener(ended)
            except Exception:  # one broken listener must not stop the others
                log.exception("grant listener failed")
        return ended

    async def get_grant(self, grant_id: str) -> DeviceGrant | None:
        return await self._grants.get_grant(grant_id)

    async def grants(self, session_id: str) -> list[GrantReport]:
        """A purchase's grants, oldest first, each with the places it plays from now."""
        now_ms = self.clock()
        grants = await self._grants.grants(session_id)
        playing = await self._grants.playing(session_id, now_ms - self.playing_window_ms)
        return [GrantReport(grant, tuple(place for place in playing
                                         if place.grant_id == grant.grant_id))
                for grant in grants]

    async def claim(self, session_id: str, grant_id: str, address: str) -> PlaceClaim:
        """The gate's report that a grant is playing from an address."""
        now_ms = self.clock()
        return await self._grants.claim_place(session_id, grant_id, address, now_ms,
                                              now_ms - self.playing_window_ms, self.max_devices)
