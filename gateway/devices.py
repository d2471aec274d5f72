"""One purchase, not one link for everyone (SPEC, Devices): playback grants per device,
and how many may play at once. No HTTP here; the clock is injected.

A *device* is one browser (named by its viewer cookie) or, for a program acting with the
API key or a platform token, the `deviceId` it names. Each device of a purchase gets its
own *grant*, carried by the gate cookie and the path token; asking again from the same
device gives the same grant until it is ended.

A grant *plays* while the gate has seen it in the last 30 s, counted once per client
address it is seen from: a *place*. A purchase may hold `max_devices` places. The store
keeps the places (so instances sharing it share the count); the gate reports to it only
when a place is new to it or its last report is a few seconds old (gate/devices.py).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from gateway.clock import Clock
from gateway.errors import DeviceLimit, InvalidRequest
from gateway.logs import log_event

if TYPE_CHECKING:
    from gateway.store.base import SessionStore

log = logging.getLogger("gateway.devices")

PLAYING_WINDOW_MS = 30_000  # a place is free this long after its last request
REPORT_INTERVAL_MS = 5_000  # how stale a gate's word on a place may get
DEVICE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
DEFAULT_DEVICE_ID = "default"  # a program that names no device: all its calls are one


@dataclass(frozen=True, slots=True)
class DeviceGrant:
    grant_id: str
    session_id: str
    device: str  # "browser:<digest of its viewer cookie>" or "device:<deviceId>"
    created_at_ms: int
    ended_at_ms: int | None = None

    @property
    def device_id(self) -> str | None:
        """The program's own name for the device; None for a browser (its cookie is a
        credential and is never shown, not even as a digest)."""
        kind, _, name = self.device.partition(":")
        return name if kind == "device" else None


@dataclass(frozen=True, slots=True)
class Device:
    """Who asks for a grant. A browser asks from where it plays, so its `address` tells
    whether it is one of the places playing; a program's server asks for a player
    elsewhere, so only its grant can tell (address None)."""

    key: str  # "browser:<digest of its viewer cookie>" or "device:<deviceId>"
    address: str | None = None

    def plays_in(self, grant_id: str, places: list[DevicePlace]) -> bool:
        return any(place.grant_id == grant_id
                   and (self.address is None or place.address == self.address)
                   for place in places)


@dataclass(frozen=True, slots=True)
class DevicePlace:
    """One grant seen playing from one client address."""

    grant_id: str
    address: str
    first_seen_ms: int
    last_seen_ms: int


class PlaceClaim(StrEnum):
    ADMITTED = "admitted"  # the place was held already, or there was room for it
    FULL = "full"  # the purchase's places are all taken
    ENDED = "ended"  # the grant was ended (moved to another device, or by an operator)


@dataclass(frozen=True, slots=True)
class GrantReport:
    """A purchase's grant, with where it is playing now (for operators)."""

    grant: DeviceGrant
    places: tuple[DevicePlace, ...]


def new_grant_id() -> str:
    return secrets.token_urlsafe(16)  # 128 bits, like session ids


def browser_device(viewer_cookie: str, address: str) -> Device:
    # A digest, not the cookie: the store must not hold viewers' credentials.
    digest = hashlib.blake2b(viewer_cookie.encode(), digest_size=16).hexdigest()
    return Device("browser:" + digest, address)


def program_device(device_id: str | None) -> Device:
    if device_id is None:
        return Device("device:" + DEFAULT_DEVICE_ID)
    if not DEVICE_ID.fullmatch(device_id):
        raise InvalidRequest(detail="deviceId must be 1-64 letters, digits or _ . : -")
    return Device("device:" + device_id)


def longest_playing(places: list[DevicePlace]) -> str | None:
    """The grant of the place that has been playing longest."""
    if not places:
        return None
    return min(places, key=lambda place: (place.first_seen_ms, place.grant_id)).grant_id


GrantEndedListener = Callable[[DeviceGrant], None]


class Devices:
    """The use cases: a device's grant, moving playback to this device, ending a grant,
    a purchase's grants for operators, and the gate's reports of places."""

    def __init__(self, store: SessionStore, clock: Clock, *, max_devices: int) -> None:
        self.store = store
        self.clock = clock
        self.max_devices = max_devices  # 0: no limit
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
        grant, playing = await self.store.grant_for_device(
            session_id, device.key, now_ms, new_grant_id(), now_ms - PLAYING_WINDOW_MS)
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
        current, playing = await self.store.grant_for_device(
            session_id, device.key, now_ms, new_grant_id(), now_ms - PLAYING_WINDOW_MS)
        if device.plays_in(current.grant_id, playing):
            return current  # playing here already
        if self.max_devices and len(playing) >= self.max_devices:
            victim = longest_playing(playing)
            if victim is not None:
                await self.end_grant(victim, reason="watched_elsewhere")
        await self.end_grant(current.grant_id, reason="replaced")
        fresh, _ = await self.store.grant_for_device(session_id, device.key, now_ms,
                                                     new_grant_id(), now_ms)
        return fresh

    async def end_grant(self, grant_id: str, *, reason: str) -> DeviceGrant | None:
        """End one grant now: its places are freed, and the gate refuses it from its next
        request (on another instance, within REPORT_INTERVAL_MS). None if unknown."""
        ended = await self.store.end_grant(grant_id, self.clock())
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

    async def grants(self, session_id: str) -> list[GrantReport]:
        """A purchase's grants, oldest first, each with the places it plays from now."""
        now_ms = self.clock()
        grants = await self.store.grants(session_id)
        playing = await self.store.playing(session_id, now_ms - PLAYING_WINDOW_MS)
        return [GrantReport(grant, tuple(place for place in playing
                                         if place.grant_id == grant.grant_id))
                for grant in grants]

    async def claim(self, session_id: str, grant_id: str, address: str) -> PlaceClaim:
        """The gate's report that a grant is playing from an address."""
        now_ms = self.clock()
        return await self.store.claim_place(session_id, grant_id, address, now_ms,
                                            now_ms - PLAYING_WINDOW_MS, self.max_devices)
