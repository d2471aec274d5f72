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
What a report does (renew, take, refuse, forget) is `decide_claim`'s to say; the store
reads the places and writes its answer in one transaction.

This module is the devices' model: types and pure functions, importing no store and no
HTTP, so the store interface can import it. The use cases are in `gateway/devices.py`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from gateway.errors import InvalidRequest
from gateway.ids import DEVICE_ID

PLAYING_WINDOW_MS = 30_000  # a place is free this long after its last request
REPORT_INTERVAL_MS = 5_000  # how stale a gate's word on a place may get
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
class PlaceDecision:
    """What a gate's report that a grant plays from an address does (`decide_claim`):
    the answer, the place to store (renewed or new), and the purchase's places to
    forget."""

    claim: PlaceClaim
    write: DevicePlace | None
    forget: tuple[DevicePlace, ...]


def decide_claim(session_id: str, grant: DeviceGrant | None, places: Iterable[DevicePlace],
                 address: str, now_ms: int, since_ms: int, limit: int) -> PlaceDecision:
    """The gate reports that `grant` plays purchase `session_id` from `address`;
    `places` are the purchase's places as stored. Places last seen at or before
    `since_ms` no longer play: they are forgotten, whatever the answer. A grant that
    is unknown (None), ended or of another purchase is ENDED. Otherwise its place at
    this address is renewed (seen now), or taken if fewer than `limit` (0: no limit)
    are held, else the purchase is FULL. Pure: no I/O, no clock."""
    held: list[DevicePlace] = []
    forget: list[DevicePlace] = []
    for place in places:
        (held if place.last_seen_ms > since_ms else forget).append(place)
    if grant is None or grant.session_id != session_id or grant.ended_at_ms is not None:
        return PlaceDecision(PlaceClaim.ENDED, None, tuple(forget))
    mine = next((place for place in held
                 if (place.grant_id, place.address) == (grant.grant_id, address)), None)
    if mine is not None:
        # Reports may arrive out of order (two instances): a place is never seen earlier.
        renewed = replace(mine, last_seen_ms=max(mine.last_seen_ms, now_ms))
        return PlaceDecision(PlaceClaim.ADMITTED, renewed, tuple(forget))
    if limit and len(held) >= limit:
        return PlaceDecision(PlaceClaim.FULL, None, tuple(forget))
    return PlaceDecision(PlaceClaim.ADMITTED,
                         DevicePlace(grant.grant_id, address, now_ms, now_ms), tuple(forget))


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
